"""The client API: one implementation of the protos/api services, served over HTTP/JSON
(routes built from the `google.api.http` annotations) and gRPC."""

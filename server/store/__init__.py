"""Persistence: the Store protocol (base) and its backends (sqlite, datastore)."""

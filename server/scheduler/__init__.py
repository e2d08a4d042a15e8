"""The scheduler: the rules of tasks and bots (the service layer)."""

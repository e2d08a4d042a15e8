"""Who a caller is: bot session tokens (`session`) and bot credentials (`botauth`).

Pure functions over the config model and the session proto; the bot API
services call them and the error middleware maps their errors to 401/403.
"""

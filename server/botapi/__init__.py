"""The bot API (PROTOCOL.md 1-2): messages, the bot service, and the aiohttp handlers."""

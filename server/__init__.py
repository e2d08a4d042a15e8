"""Drover: a self-hosted bot-fleet task scheduler speaking Swarming's bot protocol."""

__version__ = "0.1.0"

"""Configs: bots.cfg, pools.cfg and settings.cfg, validated as a set and reloaded live."""

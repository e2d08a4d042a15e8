"""Drover's bundled bot: a Swarming-protocol bot on the Python standard library.

The server packs this package into `swarming_bot.zip` (every `bot/**/*.py`,
`__main__.py` at the root, plus `config/config.json` and
`config/bot_config.py`); `python3 swarming_bot.zip start_bot` runs it. It must
import and run on Python 3.9+ with nothing installed, so no module here may
import anything outside the standard library.

Map: `cli` (subcommands) → `main` (startup and poll loop) → `taskrun` (one
task on the bot side) → `task_runner` (the child process that runs the
command: `manifest` to read it, `stream` for its output, `reporter` for its
task_updates, `supervisor` for timeouts and kills) and `update`
(self-update, restart, LKGBC). Shared pieces: `runtime` (where this code
runs from), `context` (the live bot), `remote` (HTTP), `dims`, `hooks`,
`backoff`, `singleton`, `archive`.
"""

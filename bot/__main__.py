"""Entry point of `python -m bot` and, copied to the archive's root, of
`python3 swarming_bot.zip`: both put the `bot` package on sys.path, so the
import below is absolute and works the same in either place."""

import sys

from bot import cli

if __name__ == "__main__":
    sys.exit(cli.main())

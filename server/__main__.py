"""`python -m server` is the `drover` command."""

import sys

from server.cli import main

sys.exit(main())

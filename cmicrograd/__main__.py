"""``python -m cmicrograd``: the command line (see cmicrograd.cli)."""

import sys

from .cli import main

sys.exit(main())

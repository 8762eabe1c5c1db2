"""`python -m amends`: the command line; see `amends.cli` for the commands."""

from __future__ import annotations

import sys

from amends.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())

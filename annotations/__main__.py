"""`python -m annotations ...` (see annotations.cli)."""
import sys

from annotations.cli import main

if __name__ == "__main__":
    sys.exit(main())

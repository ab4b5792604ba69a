"""`python -m nas MODE key=value ...` (same as the `nas` console script)."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main())

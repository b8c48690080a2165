"""``python -m imemviz``: the same as the ``imemviz`` command."""

import sys

from imemviz.cli import main

if __name__ == "__main__":
    sys.exit(main())

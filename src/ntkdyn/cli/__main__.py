"""``python -m ntkdyn.cli``: the ``ntkdyn`` command."""

import sys

from . import main

if __name__ == "__main__":  # Dask's worker processes import the main module again
    sys.exit(main())

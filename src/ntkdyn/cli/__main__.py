"""``python -m ntkdyn.cli``: the ``ntkdyn`` command."""

import sys

from . import main

sys.exit(main())

"""`python -m loadtest [options]`: what `nox -s loadtest -- [options]` runs; --help lists them."""

import sys

from .run import main

sys.exit(main())

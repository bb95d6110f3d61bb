"""`python -m resilience [options]`: what `nox -s resilience -- [options]` runs."""

import sys

from .run import main

sys.exit(main())

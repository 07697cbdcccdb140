"""`python -m vnncert.cli ...`: the same command line as the `vnncert` script."""
import sys

from . import main

sys.exit(main())

"""`python -m foreman`: the command line."""

import sys

from foreman.cli import main

sys.exit(main())

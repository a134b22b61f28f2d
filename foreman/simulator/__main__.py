"""`python -m foreman.simulator`: run the simulated Ollama server."""

import sys

from .cli import main

sys.exit(main())

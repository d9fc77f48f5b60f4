"""`python -m gpuad` is the `gpuad` command."""
import sys

from .cli import main

sys.exit(main())

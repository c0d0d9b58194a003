"""`python -m nncompile`: the same as the `nncompile` command."""
import sys

from .cli import main

sys.exit(main())

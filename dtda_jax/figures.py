"""`python -m dtda_jax.figures`: the command of dtda_jax/analysis/figures.py (see its docstring)."""

import sys

from dtda_jax.analysis.figures import main

if __name__ == "__main__":
    sys.exit(main())

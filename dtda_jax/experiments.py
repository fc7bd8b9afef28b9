"""`python -m dtda_jax.experiments`: the command of dtda_jax/analysis/experiments.py (see its docstring)."""

import sys

from dtda_jax.analysis.experiments import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m dtda_jax.probe`: the command of dtda_jax/analysis/domain_probe.py (see its docstring)."""

import sys

from dtda_jax.analysis.domain_probe import main

if __name__ == "__main__":
    sys.exit(main())

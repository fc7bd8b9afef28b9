"""`python -m dtda_jax.export`: the command of dtda_jax/deploy/export.py (see its docstring)."""

import sys

from dtda_jax.deploy.export import main

if __name__ == "__main__":
    sys.exit(main())

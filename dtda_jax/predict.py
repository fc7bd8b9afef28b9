"""`python -m dtda_jax.predict`: the command of dtda_jax/inference/predict.py (see its docstring)."""

import sys

from dtda_jax.inference.predict import main

if __name__ == "__main__":
    sys.exit(main())

"""dtda-jax: domain-generalised face anti-spoofing in JAX/Flax (DTDA and KDFAS).

The layout and the flow of a run are described in docs/architecture.md; the commands are
`python -m dtda_jax.main`, `dtda_jax.predict`, `dtda_jax.experiments` and `dtda_jax.figures`.
"""

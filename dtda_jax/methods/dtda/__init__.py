"""DTDA: dual-teacher distillation with a domain adversarial attack (the paper's method).

`config` its config sections and ablation variants, `attack` the domain adversarial attack,
`steps` the pure step functions, `stages` the domain-classifier and student stages, `method`
the plug-in entry points.
"""

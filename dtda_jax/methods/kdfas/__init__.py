"""KDFAS: multi-stage knowledge distillation between ViTs (the second method).

`config` its config section and ablation rows, `losses` the token Gram-matrix loss, `steps`
the pure step functions, `stages` the cached teacher and the student, `method` the plug-in
entry points.
"""

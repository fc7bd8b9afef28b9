"""Per-program XLA:CPU compiler options: which kernels XLA hands to YNNPACK.

jaxlib 0.10 routes dots, convolutions and reductions on CPU to YNNPACK by default. Measured on
a 2-core CPU (benchmarks/train_step_speed.py, student_speed.py, mtcnn_speed.py):

* training: YNNPACK's convolution gradients, the weight gradients above all, are 2-4x slower
  than XLA's own (Eigen) convolutions; keeping YNNPACK for dots and reductions (the BatchNorm
  statistics) only makes the DTDA step 1.4x faster;
* scoring: a YNNPACK reduction fusion swallows the chain of convolutions that feeds the global
  average pool and runs it 2x slower; dots only;
* face detection: MTCNN's small-channel convolutions run on about one core under YNNPACK;
  no YNNPACK at all makes detection 1.6-2x faster.

The options are per executable (``jax.jit(..., compiler_options=...)``), so they touch no
global state and only CPU compilations. A user's XLA_FLAGS that names the option wins.
"""

from __future__ import annotations

import os

import jax

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
TRAINING = {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
SCORING = {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
FACE_DETECTION = {YNN_OPTION: ""}


def compiler_options(options: dict[str, str]) -> dict[str, str] | None:
    """`options` when jitting for XLA:CPU and XLA_FLAGS does not set them, else None."""
    if jax.default_backend() != "cpu" or YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    return options

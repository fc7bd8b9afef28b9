"""The two frozen DTDA teachers and the input each was trained on.

T_fr is an ArcFace IResNet (112x112 aligned faces in [-1, 1], 512-d embedding); T_fa is the
StarGAN discriminator (128x128 CelebA faces in [-1, 1], attribute logits). Both always run
with BatchNorm in inference mode and never receive gradients. The student's images (floats in
[0, 1], any size) are resized and rescaled inside the jitted step.

Without a converted checkpoint a teacher is randomly initialised from the run's seed; the run
prints a banner and records `random-init` in its results, because distilling from a random
network transfers no face prior.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dtda_jax.models import StarGANDiscriminator, iresnet
from dtda_jax.weights import store
from dtda_jax.weights.store import KIND_ARCFACE, KIND_STARGAN

RANDOM_INIT = "random-init"
TEACHER_KINDS = {"fr": KIND_ARCFACE, "fa": KIND_STARGAN}


def teacher_input(images: jax.Array, size: int) -> jax.Array:
    """[0, 1] NHWC images -> `size` x `size`, range [-1, 1] (the teachers' training range).

    Bilinear with antialiasing, as a photo pipeline would shrink a 256 crop to 112/128.
    """
    n, h, w, c = images.shape
    if (h, w) != (size, size):
        images = jax.image.resize(images, (n, size, size, c), method="bilinear", antialias=True)
    return (images - 0.5) / 0.5


@dataclasses.dataclass(frozen=True)
class Teacher:
    """One frozen teacher: its module, the input size it expects and where its weights came from."""

    name: str  # "fr" (face recognition) or "fa" (face attribute editing)
    model: nn.Module
    input_size: int
    origin: str  # path of the converted checkpoint, or RANDOM_INIT

    def init(self, key: jax.Array) -> Any:
        x = jnp.zeros((1, self.input_size, self.input_size, 3), jnp.float32)
        return self.model.init(key, x, train=False) if self.name == "fr" else self.model.init(key, x)

    def logits(self, variables: Any, images01: jax.Array) -> jax.Array:
        """The soft-label logits the student distils: embedding (fr) or attribute logits (fa)."""
        x = teacher_input(images01, self.input_size)
        if self.name == "fr":
            out = self.model.apply(variables, x, train=False)
        else:
            _, out = self.model.apply(variables, x)
        return jax.lax.stop_gradient(out.astype(jnp.float32))

    @property
    def output_dim(self) -> int:
        return self.model.num_features if self.name == "fr" else self.model.c_dim


def make_teachers(t, names: Sequence[str], dtype: str = "float32") -> dict[str, Teacher]:
    """The teachers `names` ("fr", "fa") of a DTDA `teachers` config section, computing in `dtype`."""
    dtype = jnp.dtype(dtype)
    teachers = {}
    if "fr" in names:
        model = iresnet(t.fr_arch, input_size=t.fr_input_size, width=t.fr_width, dtype=dtype)
        teachers["fr"] = Teacher("fr", model, t.fr_input_size, t.fr_checkpoint or RANDOM_INIT)
    if "fa" in names:
        model = StarGANDiscriminator(image_size=t.fa_image_size, conv_dim=t.fa_conv_dim,
                                     c_dim=t.fa_c_dim, repeat_num=t.fa_repeat_num, dtype=dtype)
        teachers["fa"] = Teacher("fa", model, t.fa_image_size, t.fa_checkpoint or RANDOM_INIT)
    return teachers


def expected_architecture(t, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """What a `teachers` section asks of teacher `name`'s converted checkpoint, and the fields
    that set it."""
    if name == "fr":
        fields = {"arch": "fr_arch", "width": "fr_width", "input_size": "fr_input_size"}
    else:
        fields = {"image_size": "fa_image_size", "conv_dim": "fa_conv_dim", "c_dim": "fa_c_dim",
                  "repeat_num": "fa_repeat_num"}
    return ({k: t[f] for k, f in fields.items()},
            {k: f"config.teachers.{f}" for k, f in fields.items()})


def init_teacher_variables(teachers: dict[str, Teacher], key: jax.Array, t) -> dict[str, Any]:
    """Loads each teacher's converted weights, or initialises it randomly (and says so loudly)."""
    variables = {}
    for i, (name, teacher) in enumerate(sorted(teachers.items())):
        template = jax.eval_shape(teacher.init, key)
        if teacher.origin == RANDOM_INIT:
            variables[name] = jax.jit(teacher.init)(jax.random.fold_in(key, i))
            print("\n" + "!" * 88 + f"\n!! WARNING: teacher '{name}' ({type(teacher.model).__name__}) is "
                  "RANDOMLY INITIALISED: no converted checkpoint is\n!! configured "
                  f"(config.teachers.{name}_checkpoint). Distilling from it transfers no face prior.\n"
                  + "!" * 88 + "\n", flush=True)
        else:
            architecture, fields = expected_architecture(t, name)
            variables[name], manifest = store.load_converted(
                teacher.origin, template, kind=TEACHER_KINDS[name], architecture=architecture,
                config_fields=fields)
            print(f"[teachers] {name}: loaded converted {TEACHER_KINDS[name]} from {teacher.origin} "
                  f"(source {manifest['source_file']}, sha256 {manifest['source_sha256'][:12]}...)",
                  flush=True)
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables[name]["params"]))
        print(f"[teachers] {name}: {type(teacher.model).__name__}, {n_params / 1e6:.2f}M params, "
              f"input {teacher.input_size}x{teacher.input_size} in [-1, 1], origin={teacher.origin}",
              flush=True)
    return variables

"""The train state of a stage, its initialisation, and initialisation from converted weights."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import numpy as np
import optax
from flax import struct

from dtda_jax.core.sharding import replicate, replicated
from dtda_jax.weights import store


def rng_key(seed: int) -> jax.Array:
    """A typed PRNG key with the `rbg` implementation.

    Flax initialisers draw one random tensor per parameter; with the default threefry
    implementation XLA:CPU spends ~10 s compiling those hashes for a ResNet (~3 s with rbg).
    rbg streams are deterministic for a given backend, which is what resume and
    reproducibility need.
    """
    return jax.random.key(seed, impl="rbg")


class TrainState(struct.PyTreeNode):
    """Everything a stage updates; checkpointed as one tree."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def apply_gradients(self, grads: Any, tx: optax.GradientTransformation, **changes) -> "TrainState":
        """The state after one optimiser step on `grads` (step + 1), with `changes` (e.g. the
        new batch_stats) replacing fields."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state, **changes)

    @property
    def variables(self) -> dict[str, Any]:
        """What `model.apply` takes: params and BatchNorm statistics."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def init_state(init_variables: Callable[[jax.Array], Mapping[str, Any]], tx: optax.GradientTransformation,
               key: jax.Array, mesh) -> TrainState:
    """Initialises params (`init_variables(key)`, e.g. a model's `init`) and the optimiser
    state directly as replicated arrays on the mesh."""

    def init():
        variables = init_variables(key)
        params = variables["params"]
        return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))

    return jax.jit(init, out_shardings=replicated(mesh))()


def image_model_init(model, image_size: int) -> Callable[[jax.Array], Any]:
    """`init_variables` for an image model called as `model(x, train=False)` on NHWC images."""
    return lambda key: model.init(key, jax.numpy.zeros((1, image_size, image_size, 3), jax.numpy.float32),
                                  train=False)


def parameter_count(params: Any) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))


def replace_weights(state: TrainState, params: Any, batch_stats: Any, tx: optax.GradientTransformation,
                    mesh) -> TrainState:
    """The state with new params and BatchNorm statistics and a fresh optimiser state for them."""
    params, batch_stats = replicate((params, batch_stats), mesh)
    opt_state = jax.jit(tx.init, out_shardings=replicated(mesh))(params)
    return state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)


def with_converted_weights(state: TrainState, path: str, *, kind: str, architecture: Mapping[str, Any],
                           config_fields: Mapping[str, str],
                           merge: Callable[[TrainState, Any], tuple[Any, Any]],
                           tx: optax.GradientTransformation, mesh, label: str, note: str = "") -> TrainState:
    """Initialises part of a fresh state from a converted checkpoint (ImageNet ResNet-18 encoder,
    timm ViT): `merge(state, variables)` returns the new (params, batch_stats). Prints where the
    weights came from as `<label> <path> (source ..., sha256 ...)<note>`."""
    variables, manifest = store.load_converted(path, None, kind=kind, architecture=architecture,
                                               config_fields=config_fields)
    params, batch_stats = merge(state, variables)
    print(f"{label} {path} (source {manifest['source_file']}, sha256 {manifest['source_sha256'][:12]}...)"
          f"{note}", flush=True)
    return replace_weights(state, params, batch_stats, tx, mesh)

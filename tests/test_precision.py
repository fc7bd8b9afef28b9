"""model.dtype = "bfloat16": mixed precision as a checked mode.

Parameters, optimiser state and BatchNorm statistics stay float32; convolutions and matmuls
(student, teachers, domain classifier, attack) run in bfloat16; losses, softmax/KL and the
attack's gradient sign are float32. One bf16 step is the float32 step to bf16 precision; a
whole short run in both is compared in tests/test_wiring.py (test_a_bf16_run_learns_as_the_float32_run).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tiny_config

# Rounding is what these tests are about: compiled as users' runs are.
pytestmark = pytest.mark.usefixtures("production_compilation")

COMPUTE = ("conv_general_dilated", "dot_general")


def equations(jaxpr):
    """Every equation of a jaxpr, sub-jaxprs (jit, custom_vjp, loops) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (tuple, list)) else (param,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from equations(inner)


@pytest.fixture(scope="module")
def variables(data_dir):
    """The initial student state, frozen variables (teachers, domain classifier) and a random
    batch of the tiny config, built once: parameters are float32 in either dtype, so both
    dtypes' steps start from these."""
    from dtda_jax.core.sharding import make_mesh
    from dtda_jax.core.state import image_model_init, init_state, rng_key
    from dtda_jax.methods.dtda import stages
    from dtda_jax.models import ResNet18Classifier
    from dtda_jax.teachers.frozen import init_teacher_variables

    config = tiny_config(data_dir)
    size = config.data.image_size
    teachers = stages.make_teachers(config)
    frozen = init_teacher_variables(teachers, rng_key(2), config.teachers)
    domain_model = ResNet18Classifier(num_classes=3, width=config.domain_classifier.width)
    frozen["domain"] = domain_model.init(rng_key(1), jnp.zeros((1, size, size, 3)), train=False)
    student = stages.make_student(config, teachers)
    tx, _ = stages.student_optimizer(config)
    state = init_state(image_model_init(student, size), tx, rng_key(0), make_mesh(1))
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (12, size, size, 3), dtype=np.uint8)),
             "label": jnp.arange(12, dtype=jnp.int32) % 2, "domain": jnp.arange(12, dtype=jnp.int32) // 4}
    return state, frozen, batch


def student_step(data_dir, dtype="bfloat16", attack=True):
    """The DTDA student step of the tiny config in `dtype` (attack, both teachers)."""
    from dtda_jax.methods.dtda import stages
    from dtda_jax.methods.dtda.steps import student_train_step
    from dtda_jax.models import ResNet18Classifier

    config = tiny_config(data_dir)
    config.model.dtype = dtype
    teachers = stages.make_teachers(config)
    domain_model = ResNet18Classifier(num_classes=3, width=config.domain_classifier.width, dtype=jnp.dtype(dtype))
    student = stages.make_student(config, teachers)
    tx, schedule = stages.student_optimizer(config)
    loss = config.loss
    return functools.partial(student_train_step, student=student, tx=tx, schedule=schedule, teachers=teachers,
                             domain_model=domain_model if attack else None,
                             attack=stages.attack_settings(config), seed=0,
                             num_steps=6, lambda_fr=loss.lambda_fr, lambda_fa=loss.lambda_fa,
                             lambda_domain=loss.lambda_domain, temperature=loss.temperature,
                             scale_kd_by_t2=loss.scale_kd_by_t2)


def test_bf16_computes_in_bf16_and_keeps_float32_state_losses_and_attack_sign(data_dir, variables):
    step, args = student_step(data_dir), variables
    jaxpr = jax.make_jaxpr(step)(*args).jaxpr
    eqns = list(equations(jaxpr))
    compute = [e for e in eqns if e.primitive.name in COMPUTE]
    assert len(compute) > 50  # forward and backward of the student, both teachers, the attack
    wrong = {(e.primitive.name, str(v.aval.dtype)) for e in compute for v in e.invars if v.aval.dtype != jnp.bfloat16}
    assert not wrong, f"convolutions/matmuls outside bf16: {wrong}"
    signs = [e for e in eqns if e.primitive.name == "sign"]
    assert signs and all(v.aval.dtype == jnp.float32 for e in signs for v in e.invars)  # the attack's
    softmaxes = [e for e in eqns if e.primitive.name in ("exp", "log", "logistic")]
    assert softmaxes and all(v.aval.dtype == jnp.float32 for e in softmaxes for v in e.invars)

    new_state, metrics = jax.eval_shape(step, *args)
    for name, tree in (("params", new_state.params), ("batch_stats", new_state.batch_stats),
                       ("optimizer state", new_state.opt_state)):
        dtypes = {leaf.dtype for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)}
        assert dtypes == {jnp.dtype(jnp.float32)}, (name, dtypes)
    assert all(m.dtype == jnp.float32 for m in jax.tree.leaves(metrics))


def test_one_bf16_step_is_the_float32_step_to_bf16_precision(data_dir, variables):
    """From the same state and batch: every loss term within 3% (bf16 keeps 8 bits of
    mantissa, ~0.4% per rounding, through some 40 layers; measured <= 0.9%) and the parameter
    update pointing the same way (cosine >= 0.85; measured 0.91: the gradients of these
    4-channel layers, BatchNorm over 12 images, are where bf16 rounding shows most). Without the attack: the sign of a near-zero input gradient
    is rounding noise, so the attacked images themselves differ between the two precisions."""
    results = {}
    for dtype in ("float32", "bfloat16"):
        step, (state, frozen, batch) = student_step(data_dir, dtype, attack=False), variables
        before = jax.device_get(state.params)
        new_state, metrics = jax.jit(step)(state, frozen, batch)
        update = [np.ravel(a - b) for a, b in zip(jax.tree.leaves(jax.device_get(new_state.params)),
                                                   jax.tree.leaves(before))]
        results[dtype] = ({k: float(v) for k, v in metrics.items() if k.startswith("loss")}, np.concatenate(update))
    (fp32_losses, fp32_update), (bf16_losses, bf16_update) = results["float32"], results["bfloat16"]
    for name, value in fp32_losses.items():
        assert bf16_losses[name] == pytest.approx(value, rel=0.03), name
    cosine = fp32_update @ bf16_update / (np.linalg.norm(fp32_update) * np.linalg.norm(bf16_update))
    assert cosine >= 0.85

"""Test setup: two virtual CPU devices, a per-session XLA compilation cache, tiny run configs.

The end-to-end tests compile the same tiny programs many times (every run builds its step
functions afresh); the persistent cache turns the repeats into lookups. It lives in a fresh
temporary directory, so nothing carries over between sessions. `.ci/run` runs the files on
one pytest-xdist worker per core (`-n auto --dist loadfile`): most of a tiny test's time is
single-threaded tracing and compilation.
"""

import os
import tempfile

# Must happen before jax is imported anywhere in the test session.
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One cache for the whole session; with pytest-xdist (-n 2) the workers of one run share it.
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"dtda-jax-xla-cache-{_run}") if _run
                      else tempfile.mkdtemp(prefix="dtda-jax-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Tiny programs: XLA's optimisation passes cost more than they save (a third of the time of
# the compile-bound tests). The tests compare runs under the same setting or against a
# reference with a tolerance; those about rounding use `production_compilation`.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import pytest  # noqa: E402  (after the environment is set)

from dtda_jax.config import apply_variant  # noqa: E402
from dtda_jax.methods.dtda import config as dtda_config  # noqa: E402



@pytest.fixture
def production_compilation():
    """XLA's optimisation passes on, as in users' runs, for tests whose assertions are about
    rounding (bfloat16): fusion keeps intermediates in float32, so unoptimised programs round
    more often than the ones users run."""
    import jax

    name = "jax_disable_most_optimizations"
    before = jax.config.values[name]
    jax.config.update(name, False)
    try:
        yield
    finally:
        jax.config.update(name, before)


TINY_DATA = dict(train_identities_per_domain=2, test_identities_per_domain=1, frames_per_video=2)


def tiny_config(data_dir, variant="dtda"):
    c = dtda_config.default_config()
    apply_variant(c, variant)
    c.data.data_dir = str(data_dir)
    c.data.image_size = 32
    c.data.synthetic_overrides = TINY_DATA
    c.data.samples_per_group = 2
    c.data.eval_batch_size = 16
    c.model.width = 4
    c.domain_classifier.width = 4
    c.domain_classifier.num_steps = 4
    c.teachers.fr_arch = "r18"
    c.teachers.fr_width = 4
    c.teachers.fr_input_size = 32
    c.teachers.fa_image_size = 32
    c.teachers.fa_conv_dim = 4
    c.teachers.fa_repeat_num = 5
    c.optim.learning_rate = 0.01
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.checkpoint_every = 3
    c.train.eval_every = 3
    return c


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The tiny benchmark, generated once per test session."""
    from dtda_jax.data import pipeline

    path = tmp_path_factory.mktemp("tfds")
    pipeline.load_protocol(tiny_config(path))
    return path


@pytest.fixture(scope="session")
def dtda_run(data_dir, tmp_path_factory):
    """One uninterrupted run of tiny_config (DTDA, random teachers): (workdir, results). The
    tests that compare against an uninterrupted run share it."""
    from dtda_jax import train

    workdir = str(tmp_path_factory.mktemp("dtda_run") / "run")
    return workdir, train.train_and_evaluate(tiny_config(data_dir), workdir)


# The test files that take longest (minutes of real subprocesses and compilation), slowest
# first. pytest-xdist's loadfile hands files out in collection order, so starting these first
# lets the other files fill in behind them and both workers finish together.
SLOWEST_FILES = ("test_distributed.py", "test_reliability.py", "test_wiring.py", "test_train.py",
                 "test_teacher_training.py", "test_conversion.py", "test_experiments.py", "test_kdfas.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the order within a file and among the others stays

"""Test setup: two virtual CPU devices, and a per-session XLA compilation cache.

The end-to-end tests compile the same tiny programs many times (every run builds its step
functions afresh); the persistent cache turns the repeats into lookups. It lives in a fresh
temporary directory, so nothing carries over between sessions.
"""

import os
import tempfile

# Must happen before jax is imported anywhere in the test session.
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="dtda-jax-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

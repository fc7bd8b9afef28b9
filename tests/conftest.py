"""Test setup: two virtual CPU devices, so single- and multi-device code paths both run."""

import os

# Must happen before jax is imported anywhere in the test session.
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

"""Test-wide setup: 8 forced host devices so multi-device tests run on CPU."""

import os

# The collective timeout: XLA aborts a CPU collective after 40 s by default,
# which 8 device threads on a loaded 2-core machine can exceed.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
    "--xla_cpu_collective_call_terminate_timeout_seconds=600")

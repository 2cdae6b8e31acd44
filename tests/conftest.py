"""Test-wide setup: 8 forced host devices so multi-device tests run on CPU."""

import os

# The same flags as the experiment binaries (see experiments/launch.py for
# why: no intra-op threading under collectives, a longer collective timeout).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
    "--xla_cpu_multi_thread_eigen=false "
    "--xla_cpu_collective_call_terminate_timeout_seconds=600")

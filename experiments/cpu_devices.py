"""Forced host devices for the experiment binaries (import before jax).

On a CPU the data-parallel or client devices are forced host devices; the
flag has no effect on GPU/TPU devices. XLA aborts a CPU collective whose
participants do not all arrive within 40 s, which a loaded 2-core machine
running 8 device threads can exceed: the limit is raised to 10 minutes.
"""

import os

FLAGS = ("--xla_force_host_platform_device_count={n} "
         "--xla_cpu_collective_call_terminate_timeout_seconds=600")


def force(n: int = 8) -> None:
  """Adds the flags to ``XLA_FLAGS`` unless a device count is already set."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {FLAGS.format(n=n)}".strip()

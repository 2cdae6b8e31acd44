"""Test-wide setup: 8 forced host devices so multi-device tests run on CPU."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

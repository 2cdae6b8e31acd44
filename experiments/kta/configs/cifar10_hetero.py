"""``cifar10`` with two architectures: MLP(128) and MLP(256, 64), alternating.

Only the market methods run: FedAvg/FedProx refuse heterogeneous clients.
"""

from experiments.kta.configs import cifar10


def get_config():
  config = cifar10.get_config()
  config.models = [{"name": "mlp", "kwargs": {"features": (128,)}},
                   {"name": "mlp", "kwargs": {"features": (256, 64)}}]
  config.methods = {k: v for k, v in config.methods.items()
                    if k in ("kta", "kta_power", "fedmd", "local")}
  return config

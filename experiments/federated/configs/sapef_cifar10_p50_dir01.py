"""SA-PEF on CIFAR-10 at the paper's scale: ``p50_dir01`` (for an accelerator).

The authors' ``configs/cifar10/p50_dir01_top001``: as
:mod:`sapef_cifar10_p10_dir05` (same departures) with 50 clients per round
and Dirichlet 0.1. Not run on the build machine (no accelerator was lent).
"""

from experiments.federated.configs import sapef_cifar10_p10_dir05


def get_config(arg: str | None = None):
  return sapef_cifar10_p10_dir05.get_config(arg, clients_per_round=50,
                                            dirichlet=0.1)

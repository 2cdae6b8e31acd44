"""``cifar10`` (10k images, 20 Dirichlet(0.5) clients) with a small CNN on CPU.

The LEAF CNN narrowed to a 128-unit dense layer, its convolutions computed
by :class:`sparsejax.models.PatchConv` (fast under vmap over per-client
weights on a CPU): 579,402 parameters on 32x32x3. Three seeds; the knob grids
are cut to three candidates each (3-round searches) to fit a CPU budget.
"""

from experiments.kta.configs import cifar10


def get_config():
  config = cifar10.get_config()
  config.seeds = (0, 1, 2)
  config.models = [{"name": "leaf_cnn",
                    "kwargs": {"hidden": 128, "patch_conv": True}}]
  config.methods["kta"]["search"] = {"teacher_tau": (0.01, 0.03, 0.1)}
  config.search_rounds = 3
  return config

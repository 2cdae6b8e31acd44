"""CPU-scale CIFAR-10: 10k training images, 20 Dirichlet(0.5) clients.

Reference 1,000 images drawn from those 10k; the other 9,000 go to the
clients, each holding out 20% as its personalised test set; global test:
2,000 of the official test images. 3 seeds, 50 rounds.

Departure: the model is MLP(128), not a CNN. On the shared 2-core CPU
ResNet-9 at width 8 took > 2.5 min for 3 FedAvg rounds, and the PatchConv
LEAF CNN of ``cifar10_patchconv.py`` (579k params) had not finished its
first method's first round after 6 min (2026-12-01, beside one other run):
its 3 seeds x 6 methods x (50 + search) rounds do not fit a session.
"""

from experiments.kta.configs import default


def get_config():
  config = default.base_config()
  config.seeds = (0, 1, 2)
  config.dataset.train_size = 10000
  config.dataset.test_size = 2000
  config.reference_size = 1000
  config.models = [{"name": "mlp", "kwargs": {"features": (128,)}}]
  config.optimizer.learning_rate = 0.01
  config.num_rounds = 50
  return config

"""CPU-scale CIFAR-10: 10k training images, 20 Dirichlet(0.5) clients.

Reference 1,000 images drawn from those 10k; the other 9,000 go to the
clients, each holding out 20% as its personalised test set; global test:
2,000 of the official test images. Model: MLP(128) (a CNN is too slow on the
shared 2-core CPU: ResNet-9 at width 8 took > 2.5 min for 3 FedAvg rounds).
``kta_sharp`` sharpens the market (beta = 5, top-5 teachers).
"""

from experiments.kta.configs import default


def get_config():
  config = default.base_config()
  config.seeds = (0, 1)
  config.dataset.train_size = 10000
  config.dataset.test_size = 2000
  config.reference_size = 1000
  config.models = [{"name": "mlp", "kwargs": {"features": (128,)}}]
  config.optimizer.learning_rate = 0.01
  config.methods["kta_sharp"] = {"kind": "kta", "beta": 5.0, "top_m": 5}
  config.num_rounds = 20
  return config

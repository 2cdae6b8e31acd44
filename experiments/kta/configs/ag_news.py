"""AG News offline (7,600 rows): reference 500 / clients 5,580 / test 1,520.

``load_dataset("ag_news")`` splits the offline test csv 80/20 stratified into
train (6,080) and test (1,520); the reference set (500) is drawn from that
train part and the rest is split over 10 Dirichlet(0.5) clients, each holding
out 20% as its personalised test set. Model: TextClassifier ``kind="bag"``.
"""

from experiments.kta.configs import default


def get_config():
  config = default.base_config()
  config.seeds = (0, 1, 2)
  config.dataset.name = "ag_news"
  config.dataset.kwargs = {"max_length": 64, "vocab_size": 20000}
  config.reference_size = 500
  config.partition.num_clients = 10
  config.clients_per_round = 5
  config.models = [{"name": "text_bag",
                    "kwargs": {"vocab_size": 20000, "embed_dim": 64,
                               "hidden": (64,)}}]
  config.optimizer = {"name": "adam", "learning_rate": 3e-3}
  config.num_rounds = 50
  return config

"""Federated learning simulation: partitioners, algorithms, engine, ledger.

Example::

  import optax, sparsejax as sj
  import sparsejax.federated

  clients = sj.federated.partition_dataset(train, "dirichlet", 100, alpha=0.1)
  model = sj.federated.classifier(module, train.x[:1])
  algo = sj.federated.sapef(model, optax.sgd(0.05, momentum=0.9),
                            sj.top_k(0.01, scope="global"), alpha=0.85)
  sim = sj.federated.Simulation(algo, clients, clients_per_round=10,
                                test_data=test)
  for rnd, metrics in sim.run(num_rounds=200):
    ...
"""

from sparsejax.federated.aggregation import AGGREGATIONS
from sparsejax.federated.aggregation import Aggregate
from sparsejax.federated.aggregation import client_sums
from sparsejax.federated.aggregation import finalize
from sparsejax.federated.aggregation import message_support
from sparsejax.federated.algorithms import ClientState
from sparsejax.federated.algorithms import FederatedAlgorithm
from sparsejax.federated.algorithms import LocalState
from sparsejax.federated.algorithms import ServerState
from sparsejax.federated.algorithms import ef_fedavg
from sparsejax.federated.algorithms import fedavg
from sparsejax.federated.algorithms import fedprox
from sparsejax.federated.algorithms import local_update_algorithm
from sparsejax.federated.algorithms import sapef
from sparsejax.federated.algorithms import theory_alpha
from sparsejax.federated.ledger import CommLedger
from sparsejax.federated.ledger import broadcast_bits
from sparsejax.federated.market import ClientGroup
from sparsejax.federated.market import Market
from sparsejax.federated.market import MarketConfig
from sparsejax.federated.market import baseline_algorithm
from sparsejax.federated.model import FederatedModel
from sparsejax.federated.model import classifier
from sparsejax.federated.partition import SCHEMES
from sparsejax.federated.partition import ClientData
from sparsejax.federated.partition import dirichlet_partition
from sparsejax.federated.partition import group_partition
from sparsejax.federated.partition import iid_partition
from sparsejax.federated.partition import partition_dataset
from sparsejax.federated.partition import shard_partition
from sparsejax.federated.simulation import ClientArrays
from sparsejax.federated.simulation import Simulation
from sparsejax.federated.simulation import SimulationState
from sparsejax.federated.simulation import client_mesh
from sparsejax.federated.simulation import client_update
from sparsejax.federated.simulation import local_batches

__all__ = [
    "AGGREGATIONS",
    "Aggregate",
    "ClientArrays",
    "ClientData",
    "ClientGroup",
    "ClientState",
    "CommLedger",
    "FederatedAlgorithm",
    "FederatedModel",
    "LocalState",
    "Market",
    "MarketConfig",
    "SCHEMES",
    "ServerState",
    "Simulation",
    "SimulationState",
    "baseline_algorithm",
    "broadcast_bits",
    "classifier",
    "client_mesh",
    "client_sums",
    "client_update",
    "dirichlet_partition",
    "ef_fedavg",
    "fedavg",
    "fedprox",
    "finalize",
    "group_partition",
    "iid_partition",
    "local_batches",
    "local_update_algorithm",
    "message_support",
    "partition_dataset",
    "sapef",
    "shard_partition",
    "theory_alpha",
]

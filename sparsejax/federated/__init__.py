"""Federated learning simulation: partitions, algorithms, engines, ledger.

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

The engines' parts (the client round ``simulation.client_update``,
``aggregation.client_sums``, the single partitioners, the market's server
rule in :mod:`sparsejax.federated.knowledge`) stay in their modules.
"""

from sparsejax.federated.algorithms import ALGORITHMS
from sparsejax.federated.algorithms import ClientState
from sparsejax.federated.algorithms import DownlinkState
from sparsejax.federated.algorithms import FederatedAlgorithm
from sparsejax.federated.algorithms import ScaffoldClientState
from sparsejax.federated.algorithms import ScaffoldServerState
from sparsejax.federated.algorithms import ServerState
from sparsejax.federated.algorithms import ef21_fedavg
from sparsejax.federated.algorithms import ef_fedavg
from sparsejax.federated.algorithms import fedavg
from sparsejax.federated.algorithms import fedprox
from sparsejax.federated.algorithms import local_update_algorithm
from sparsejax.federated.algorithms import sapef
from sparsejax.federated.algorithms import scaffold
from sparsejax.federated.algorithms import theory_alpha
from sparsejax.federated.client_store import CorruptStoreError
from sparsejax.federated.knowledge import MarketConfig
from sparsejax.federated.ledger import CommLedger
from sparsejax.federated.market import ArchitectureGroup
from sparsejax.federated.market import Market
from sparsejax.federated.model import FederatedModel
from sparsejax.federated.model import classifier
from sparsejax.federated.partition import ClientData
from sparsejax.federated.partition import holdout_split
from sparsejax.federated.partition import partition_dataset
from sparsejax.federated.partition import split_off
from sparsejax.federated.simulation import Simulation
from sparsejax.federated.simulation import SimulationState
from sparsejax.federated.simulation import client_mesh

__all__ = [
    "ALGORITHMS",
    "ArchitectureGroup",
    "ClientData",
    "ClientState",
    "CommLedger",
    "CorruptStoreError",
    "DownlinkState",
    "FederatedAlgorithm",
    "FederatedModel",
    "Market",
    "MarketConfig",
    "ScaffoldClientState",
    "ScaffoldServerState",
    "ServerState",
    "Simulation",
    "SimulationState",
    "classifier",
    "client_mesh",
    "ef21_fedavg",
    "ef_fedavg",
    "fedavg",
    "fedprox",
    "holdout_split",
    "local_update_algorithm",
    "partition_dataset",
    "sapef",
    "scaffold",
    "split_off",
    "theory_alpha",
]

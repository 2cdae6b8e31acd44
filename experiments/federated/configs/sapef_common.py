"""Methods and settings shared by the SA-PEF reproduction configs.

The authors' code (github Dawitkiros/SA-PEF, ALGORITHMS.md sections 2 and 6):
global top-1% uplink, "support" aggregation, ``lr_g = 1``, alpha 0.85,
fresh SGD momentum 0.9 each round, warm-up ``lr_max * r / W`` from round 1
then cosine, CSER resetting the global top-10% of the residual every 5
rounds. The gradient mismatch ``||g(w) - g(w + e_i)||^2`` is measured at
``metric_alpha = 1`` for every method, as their ``track-metrics`` runs do.
"""

TOP_1 = {"name": "top_k", "ratio": 0.01, "scope": "global"}
RESET = {"name": "top_k", "ratio": 0.1, "scope": "global"}
ALPHAS = (0.0, 0.25, 0.5, 0.85, 1.0)


def methods():
  """FedAvg (dense), EF, SAEF, SA-PEF 0.85 and CSER, as the authors run them."""
  return {
      "fedavg": {"algorithm": "fedavg"},
      "ef": {"algorithm": "ef_fedavg", "compressor": dict(TOP_1)},
      "saef": {"algorithm": "sapef", "alpha": 1.0,
               "compressor": dict(TOP_1)},
      "sapef": {"algorithm": "sapef", "alpha": 0.85,
                "compressor": dict(TOP_1)},
      "cser": {"algorithm": "ef_fedavg", "compressor": dict(TOP_1),
               "reset_every": 5, "reset_compressor": dict(RESET)},
  }


def ablation_methods():
  """The alpha sweep's other points and the "mean"-aggregation ablation.

  ``ALPHAS`` 0, 0.85 and 1 are :func:`methods`' ``ef``, ``sapef`` and
  ``saef``; ``*_mean`` are EF and SA-PEF with "mean" aggregation.
  """
  sweep = {f"sapef_a{int(100 * a):03d}": {"algorithm": "sapef", "alpha": a,
                                          "compressor": dict(TOP_1)}
           for a in ALPHAS if a not in (0.0, 0.85, 1.0)}
  return dict(sweep,
              ef_mean={"algorithm": "ef_fedavg", "compressor": dict(TOP_1),
                       "aggregation": "mean"},
              sapef_mean={"algorithm": "sapef", "alpha": 0.85,
                          "compressor": dict(TOP_1), "aggregation": "mean"})


def core_methods():
  """The claim's three: FedAvg (defines the targets), EF and SA-PEF 0.85."""
  return {k: v for k, v in methods().items() if k in ("fedavg", "ef", "sapef")}


def apply(config, arg: str | None):
  """The authors' common settings on ``config``; ``arg`` picks the methods.

  ``arg``: ``None``/``""`` for :func:`methods`, ``"ablation"`` for
  :func:`ablation_methods` (run into a separate workdir), ``"core"`` for
  :func:`core_methods` (where five methods do not fit the machine).
  """
  choices = {None: methods, "": methods, "ablation": ablation_methods,
             "core": core_methods}
  if arg not in choices:
    raise ValueError(f"config argument must be empty, 'ablation' or 'core', "
                     f"got {arg!r}")
  config.aggregation = "support"
  config.server_lr = 1.0
  config.local.momentum = 0.9
  config.methods = choices[arg]()
  config.mismatch_alpha = 1.0
  return config

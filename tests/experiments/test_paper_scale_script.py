"""experiments/paper_scale_gpu.sh: every command resolves its config.

The script is meant for a lent accelerator, where a typo in a config path or
field would waste the session's few minutes; ``PRINT_CONFIG=1`` resolves
each command's config (``--print_config``) without running it.
"""

import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.mark.slow
def test_every_run_of_the_gpu_script_resolves_with_its_cuts(tmp_path):
  env = dict(os.environ, OUT=str(tmp_path), PRINT_CONFIG="1",
             PYTHON=sys.executable)
  result = subprocess.run(
      ["bash", os.path.join(ROOT, "experiments/paper_scale_gpu.sh")],
      env=env, capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  configs = {name: yaml.full_load((tmp_path / f"{name}.config").read_text())
             for name in ("sahu_resnet18", "cwmp_resnet18", "sapef_cifar10",
                          "kta_resnet18")}
  sahu = configs["sahu_resnet18"]
  assert sahu["model"]["name"] == "resnet18"
  assert sahu["num_steps"] == 400
  assert set(sahu["methods"]) == {"ef_top_k_global", "ef_threshold_heuristic"}
  cwmp = configs["cwmp_resnet18"]
  assert cwmp["model"]["name"] == "resnet18"
  assert cwmp["num_rounds"] == 10 and cwmp["tx_pj_per_bit"] == 0
  assert {m["compressor"]["energy_ratio"] for m in cwmp["methods"].values()
          } == {0.05}
  assert configs["sapef_cifar10"]["num_rounds"] == 20
  assert configs["kta_resnet18"]["num_rounds"] == 5

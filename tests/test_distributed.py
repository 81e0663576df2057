"""Scale-out: the README's `accelerate launch --config_file configuration/accelerate_cpu_2proc.yaml scripts/train.py`
(2 CPU processes, gloo DDP) gives the same losses and test metrics as 1 process, with the same flags.

Both runs: same seed (so the same initial weights and the same shuffled order; `data_seed` defaults to the seed),
dropout 0, no warm-up randomness, 8 optimisation steps of a global batch of 8: `--per_device_train_batch_size 8` in
both; `keep_global_batch` (on by default) gives each of the two processes 4 rows. Trainer's sampler draws one permutation from the seed and
accelerate hands consecutive per-device batches to the ranks, so step k sees the same 8 rows in both runs; DDP averages
the two ranks' mean-loss gradients, which equals the mean over the 8 rows.

Tolerance: 1e-5 absolute on each logged loss (and on the final test loss). What remains is float32 rounding: the sum
order of the all-reduce, and SDPA over sequences padded to different lengths (each rank pads its 4 rows to its own
longest). Measured: at most 2.4e-7 over the 8 steps. A real mismatch (a different row order, a wrong world size,
gradients summed instead of averaged) moves the losses by 1e-2 or more.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5

COMMON = [
    "--dataset_options", json.dumps({"num_train": 64, "num_validation": 16, "num_test": 16}),
    "--num_train_epochs", "1", "--hidden_dropout_prob", "0", "--attention_dropout", "0",
    "--learning_rate", "0.003", "--warmup_steps", "0", "--logging_steps", "1",
    "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
    "--report_to", "none", "--disable_tqdm", "true", "--seed", "3",
]


def _environment() -> dict:
    environment = dict(os.environ)
    environment.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                       PYTHONPATH=str(ROOT) + os.pathsep + environment.get("PYTHONPATH", ""))
    return environment


def _losses(output_dir: Path) -> tuple[list[float], dict]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    results = json.loads((output_dir / "all_results.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry], results


ACCELERATE = Path(sys.executable).parent / "accelerate"


@pytest.mark.skipif(not ACCELERATE.exists() and shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_cpu_processes_match_one(tmp_path):
    launcher = str(ACCELERATE) if ACCELERATE.exists() else "accelerate"
    script = str(ROOT / "scripts" / "train.py")
    two = subprocess.run(
        [launcher, "launch", "--config_file", str(ROOT / "configuration" / "accelerate_cpu_2proc.yaml"), script, *COMMON,
         "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "two")],
        cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=240,
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, script, *COMMON, "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "one")],
        cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=240,
    )
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]

    losses_two, results_two = _losses(tmp_path / "two")
    losses_one, results_one = _losses(tmp_path / "one")
    assert len(losses_one) == len(losses_two) == 8  # 64 rows / global batch 8: a world size of 1 would log 16
    for step, (a, b) in enumerate(zip(losses_one, losses_two), start=1):
        assert abs(a - b) <= TOLERANCE, f"step {step}: 1 process {a}, 2 processes {b}"
    assert len(set(round(loss, 3) for loss in losses_one)) > 4  # the losses move: the comparison is not vacuous
    assert abs(results_one["test_loss"] - results_two["test_loss"]) <= TOLERANCE
    assert results_one["test_samples"] == results_two["test_samples"] == 16
    assert results_one["test_accuracy"] == results_two["test_accuracy"]
    # The distributed run saved a loadable checkpoint once (rank 0).
    assert (tmp_path / "two" / "model.safetensors").is_file() and (tmp_path / "two" / "preprocessor_config.json").is_file()

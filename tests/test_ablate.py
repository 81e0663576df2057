"""scripts/ablate.py: naming, the paired test, follow-up expansion, and one real (tiny) run."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablate.py"
spec = importlib.util.spec_from_file_location("ablate", SCRIPT)
ablate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablate)


def test_configuration_names():
    assert ablate.configuration_name({"absolute_position_encoding": "sinusoidal"}) == "sinusoidal"
    assert ablate.configuration_name({"absolute_position_encoding": "none", "relative_position_encoding": "alibi"}) == "alibi"
    assert ablate.configuration_name({"absolute_position_encoding": "dynamic", "relative_position_encoding": "rope"}) == "dynamic+rope"
    assert ablate.configuration_name({"absolute_position_encoding": "multiscale", "position_fusion": "gated"}) == "multiscale [gated]"
    assert ablate.configuration_name({"absolute_position_encoding": "none"}) == "none"


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(0)
    baseline = {seed: float(value) for seed, value in enumerate(rng.uniform(0.8, 0.9, 5))}
    scores = {seed: value + float(rng.normal(0.02, 0.01)) for seed, value in baseline.items()}
    result = ablate.paired_test(scores, baseline)
    differences = np.array([scores[s] - baseline[s] for s in range(5)])
    assert math.isclose(result["p"], stats.ttest_rel(list(scores.values()), list(baseline.values())).pvalue)
    half = stats.t.ppf(0.975, 4) * differences.std(ddof=1) / math.sqrt(5)
    assert math.isclose(result["ci_high"] - result["ci_low"], 2 * half)
    constant = ablate.paired_test({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert math.isnan(constant["p"]) and math.isclose(constant["difference"], 0.1)


def test_expansion_picks_best_absolute_and_relative():
    recipe = {"grid": [{"absolute_position_encoding": a} for a in ("sinusoidal", "dynamic", "learned", "none")]
              + [{"absolute_position_encoding": "none", "relative_position_encoding": r} for r in ("rope", "alibi")],
              "expand": {"best_absolute_fusions": 2, "best_combination": True}}
    summary = [{"configuration": name} for name in ("alibi", "none", "dynamic", "rope", "learned", "sinusoidal")]
    extra = [ablate.configuration_name(s) for s in ablate.expand(recipe, summary, set())]
    assert extra == ["dynamic [concat]", "dynamic [gated]", "learned [concat]", "learned [gated]", "dynamic+alibi"]


def test_one_tiny_run_on_synthetic_data(tmp_path):
    pytest.importorskip("modeling_posattn.toolkit.data.synthetic")
    recipe = {"dataset": {"name": "synthetic", "options": {"num_train": 32, "num_test": 16}},
              "model": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
              "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16}}
    row = ablate.run_one(recipe, {"absolute_position_encoding": "multiscale"}, seed=0, output_root=str(tmp_path))
    assert row["configuration"] == "multiscale" and 0.0 <= row["score"] <= 1.0 and row["parameters"] > 0

"""scripts/benchmark_main_job.py: tokens/s from Trainer's runtime, ratios paired by seed, the token count of the data."""

import pytest

from conftest import ROOT, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "scripts" / "benchmark_main_job.py")


def run(variant, seed, runtime, accuracy):
    return {"variant": variant, "seed": seed, "train_runtime": runtime, "epochs": 2.0, "test_accuracy": accuracy}


def test_ratios_are_paired_by_seed(bench):
    rows = [run("before", 1, 10.0, 0.9), run("before", 2, 20.0, 0.8),
            run("unit-scale model", 1, 5.0, 0.9), run("unit-scale model", 2, 16.0, 0.7), run("unit-scale model", 3, 1.0, 0.5)]
    table, summary = bench.summarise(rows, tokens=100, references=("before", "before's model"))
    assert summary["unit-scale model"]["tokens_per_second"] == [40.0, 12.5, 200.0]  # 100 tokens x 2 epochs / runtime
    assert summary["unit-scale model"]["vs before"] == "1.62x [1.25-2.00]"  # seed 3 has no `before` run to pair with
    assert summary["unit-scale model"]["vs before's model"] == "-"
    assert "| unit-scale model | 3 | 40 [12-200] | 1.62x [1.25-2.00] | - | 0.700 ± 0.200 | - |" in table


def test_training_tokens_are_the_packed_lengths(bench):
    """The count equals the processor's packed lengths of the default training split (real tokens, no padding)."""
    from modeling_posattn import PosAttnProcessor
    from modeling_posattn.toolkit.builders import encode_splits
    from modeling_posattn.toolkit.data.synthetic import load_synthetic
    from modeling_posattn.toolkit.recipes import DEFAULT_RECIPE

    data = load_synthetic(**DEFAULT_RECIPE["dataset_options"])
    encoded = encode_splits({"train": data.dataset["train"]}, PosAttnProcessor(modalities=data.modalities))["train"]
    assert bench.training_tokens_per_epoch() == sum(int(n) for n in encoded["length"])

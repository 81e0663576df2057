"""scripts/benchmark_versions.py: an earlier commit's model package loads beside this one under its own name, and the
comparison runs both models on the same weights and batch (so its ratio measures the code alone)."""

import shutil
import subprocess
import sys

import pytest
from transformers import AutoConfig

from conftest import ROOT, load_script


def git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0


@pytest.mark.skipif(not git_checkout(), reason="needs a git checkout of the project (git archive of a commit)")
def test_an_earlier_commit_loads_beside_this_package_and_computes_the_same(tmp_path, monkeypatch):
    module = load_script(ROOT / "scripts" / "benchmark_versions.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = module.package_at("HEAD", tmp_path)
    try:
        before, now = module.model_classes(name), module.model_classes("modeling_posattn")
        assert before.PosAttnModel is not now.PosAttnModel
        modalities = {"features": {"input_dim": 4, "sampling_rate": 10.0}}
        settings = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
        row = module.compare(before, now, (modalities, 12, 2, settings, True), rounds=2)
        assert row["max_output_difference"] == 0.0
        assert row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
        module.write({"machine": "test CPU", "before": "abc", "now": "def", "rounds": 2, "cases": {"tiny": row}}, tmp_path)
        assert "| tiny | training |" in (tmp_path / "versions_abc.md").read_text()
        # the extracted package registered nothing: the Auto classes still map to this checkout's model
        assert AutoConfig.for_model("posattn").__class__ is now.PosAttnConfig
    finally:
        for loaded in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            del sys.modules[loaded]


def test_the_four_modality_case_packs_every_modality_into_each_sample():
    module = load_script(ROOT / "scripts" / "benchmark_versions.py")
    settings = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    _, batch = module.build(module.model_classes("modeling_posattn"), module.FOUR_MODALITIES, 40, 2, settings)
    assert batch["modality_ids"].shape == (2, 40) and batch["attention_mask"].all()
    assert all(set(row.tolist()) == {0, 1, 2, 3} for row in batch["modality_ids"])

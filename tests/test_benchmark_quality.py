"""scripts/benchmark_quality.py: the rockets see the posattn run's data; the report is written; aeon stays optional."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from conftest import ROOT, load_script
from modeling_posattn.toolkit.data.uea import load_uea

FIXTURES = ROOT / "tests" / "fixtures" / "uea"


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "scripts" / "benchmark_quality.py")


def test_rocket_input_is_the_modalities_channels_padded_with_the_last_value(bench):
    bundle = load_uea(FIXTURES / "TinyVar", modalities={"b": [3, 2], "a": [0]})
    rows = bench.modality_series(bundle.dataset["train"], bundle.modalities)
    first = bundle.dataset["train"][0]
    np.testing.assert_allclose(rows[0], np.concatenate([np.asarray(first["b"]), np.asarray(first["a"])], axis=1).T)
    assert [r.shape[1] for r in rows] == [len(row["a"]) for row in bundle.dataset["train"]]
    padded = bench.pad_with_last_value(rows, 20)
    assert padded.shape == (18, 3, 20)
    length = rows[0].shape[1]
    np.testing.assert_array_equal(padded[0, :, :length], rows[0])
    np.testing.assert_array_equal(padded[0, :, length:], np.repeat(rows[0][:, -1:], 20 - length, axis=1))


def test_missing_aeon_is_a_clear_error(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon", None)
    with pytest.raises(ImportError, match=r"benchmark extra.*--skip_rockets"):
        bench.import_aeon()


def test_report_with_the_recipe_and_published_rows(bench, tmp_path, capsys):
    options = json.dumps({"path": str(FIXTURES / "TinyFixed"), "modalities": {"acc": [0, 1, 2], "gyro": [3, 4, 5]}})
    argv = ["--dataset_options", options, "--seeds", "1", "--output_dir", str(tmp_path / "quality"),
            "--work_dir", str(tmp_path / "work"), "--num_train_epochs", "1"]
    rockets = importlib.util.find_spec("aeon") is not None
    if not rockets:
        argv.append("--skip_rockets")
    bench.PUBLISHED["tinyfixed"] = [("Some paper", 0.5, "a made-up source")]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "quality" / "tinyfixed.json").read_text())
    posattn = report["methods"]["posattn (uea.json --num_train_epochs 1)"]
    assert [run["seed"] for run in posattn["runs"]] == [1] and 0 <= posattn["summary"]["mean"] <= 1
    run = posattn["runs"][0]
    assert run["train_runtime_s"] > 0 and run["wall_s"] > run["train_runtime_s"] and 0 < run["cpu_s"]
    assert report["dataset"]["train_shape"] == [24, 6, 16] and report["machine"]["cores"] >= 1
    assert any(name.startswith("MiniRocket") for name in report["methods"]) == rockets
    text = (tmp_path / "quality" / "tinyfixed.md").read_text()
    assert "| Some paper | 0.500 | a made-up source |" in text and "Machine:" in text

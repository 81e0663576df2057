"""`uea` loader: any UEA/UCR `.ts` set, fixed and variable length, modalities, path forms, bad input, and the
`scripts/train.py --config configuration/uea.json --dataset_name uea` command end to end."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from _loader_checks import assert_processor_layout, assert_trains, encode
from modeling_posattn.toolkit.data import load_builtin_dataset
from modeling_posattn.toolkit.data._common import data_available, default_data_dir
from modeling_posattn.toolkit.data.uea import load_uea

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from make_uea_fixtures import FIXTURES, write_ts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXED, VARIABLE = FIXTURES / "TinyFixed", FIXTURES / "TinyVar"
needs_natops = pytest.mark.skipif(
    not data_available(None, "natops", ("NATOPS_TRAIN.ts", "NATOPS_TEST.ts")),
    reason=f"NATOPS data not found: needs {default_data_dir() / 'natops'} (or set POSATTN_DATA_DIR)",
)


def raw_cases(path: Path):
    """The cases of a `.ts` file parsed by hand (independently of the loader): list of channels x length, labels."""
    lines = path.read_text().splitlines()
    data = lines[[line.strip().lower() for line in lines].index("@data") + 1 :]
    fields = [line.split(":") for line in data if line.strip()]
    return [np.array([[float(v) for v in f.split(",")] for f in case[:-1]]) for case in fields], [case[-1] for case in fields]


def test_fixed_length_defaults_one_modality_at_1_hz():
    bundle = load_uea(FIXED)
    assert bundle.modalities == {"series": {"input_dim": 6, "sampling_rate": 1.0}}
    assert bundle.label_names == ["1", "2", "10"] and bundle.num_labels == 3  # numeric sort of @classLabel
    assert {split: len(rows) for split, rows in bundle.dataset.items()} == {"train": 24, "test": 12}
    assert bundle.problem_type == "single_label_classification"
    assert_processor_layout(bundle, with_timestamps=True)
    cases, labels = raw_cases(FIXED / "TinyFixed_TEST.ts")
    for index in (0, 5, 11):
        row = bundle.dataset["test"][index]
        np.testing.assert_allclose(row["series"], cases[index].T, rtol=1e-6)
        np.testing.assert_allclose(row["timestamps"]["series"], np.arange(16.0))
        assert bundle.label_names[row["labels"]] == labels[index]
    assert "length 16" in bundle.description


def test_modalities_and_sampling_rate_group_the_channels():
    bundle = load_uea(FIXED, modalities={"gyro": [3, 4, 5], "acc": [2, 0]}, sampling_rate=10)
    assert bundle.modalities == {"gyro": {"input_dim": 3, "sampling_rate": 10.0}, "acc": {"input_dim": 2, "sampling_rate": 10.0}}
    assert_processor_layout(bundle, with_timestamps=True)
    cases, _ = raw_cases(FIXED / "TinyFixed_TRAIN.ts")
    row = bundle.dataset["train"][3]
    np.testing.assert_allclose(row["gyro"], cases[3][[3, 4, 5]].T, rtol=1e-6)
    np.testing.assert_allclose(row["acc"], cases[3][[2, 0]].T, rtol=1e-6)
    for name in ("gyro", "acc"):
        np.testing.assert_allclose(row["timestamps"][name], np.arange(16) / 10.0)
    assert bundle.options["modalities"] == {"gyro": [3, 4, 5], "acc": [2, 0]}


def test_variable_length_rows_keep_their_own_length_and_train():
    bundle = load_uea(VARIABLE, modalities={"a": [0, 1], "b": [2, 3]}, sampling_rate=4)
    assert bundle.label_names == ["run", "sit", "walk"]  # sorted, not in header order
    cases, labels = raw_cases(VARIABLE / "TinyVar_TRAIN.ts")
    lengths = [case.shape[1] for case in cases]
    assert len(set(lengths)) > 3, "the fixture must hold several lengths"
    train = bundle.dataset["train"]
    for index, case in enumerate(cases):
        row = train[index]
        assert len(row["a"]) == len(row["b"]) == lengths[index]
        np.testing.assert_allclose(row["b"], case[[2, 3]].T, rtol=1e-6)
        np.testing.assert_allclose(row["timestamps"]["a"], np.arange(lengths[index]) / 4.0)
        assert bundle.label_names[row["labels"]] == labels[index]
    assert "variable length" in bundle.description
    # the processor packs rows of different lengths (one token per step and modality), and a model learns from them
    _, encoded = encode(bundle, n=6)
    assert [len(row["modality_ids"]) for row in encoded] == [2 * n for n in lengths[:6]]
    assert_trains(bundle, n=18)


def test_vary_length_crop_keeps_contiguous_windows_of_the_original():
    options = {"kind": "crop", "min_fraction": 0.4, "max_fraction": 0.8}
    bundle = load_uea(FIXED, vary_length=options, seed=3)
    cases, _ = raw_cases(FIXED / "TinyFixed_TRAIN.ts")
    lengths = [len(row["series"]) for row in bundle.dataset["train"]]
    assert min(lengths) >= round(0.4 * 16) and max(lengths) <= round(0.8 * 16) and len(set(lengths)) > 2
    for index in (0, 7):
        row = np.asarray(bundle.dataset["train"][index]["series"])
        original = cases[index].T
        starts = [s for s in range(len(original) - len(row) + 1) if np.allclose(original[s : s + len(row)], row, rtol=1e-6)]
        assert starts, "a crop is a contiguous window of the original series"
        np.testing.assert_allclose(bundle.dataset["train"][index]["timestamps"]["series"], np.arange(len(row)))
    assert bundle.options["vary_length"] == options and "Lengths varied by this loader" in bundle.description
    again = load_uea(FIXED, vary_length=options, seed=3)
    assert [len(r["series"]) for r in again.dataset["test"]] == [len(r["series"]) for r in bundle.dataset["test"]]
    other = load_uea(FIXED, vary_length=options, seed=4)
    assert [len(r["series"]) for r in other.dataset["train"]] != lengths


def test_vary_length_resample_interpolates_the_whole_series():
    bundle = load_uea(FIXED, vary_length={"kind": "resample", "min_fraction": 0.5, "max_fraction": 2.0})
    cases, _ = raw_cases(FIXED / "TinyFixed_TEST.ts")
    lengths = [len(row["series"]) for row in bundle.dataset["test"]]
    assert max(lengths) > 16 > min(lengths)
    for index in range(3):
        row = np.asarray(bundle.dataset["test"][index]["series"])
        np.testing.assert_allclose(row[[0, -1]], cases[index].T[[0, -1]], rtol=1e-6)  # same start and end
        grid = np.linspace(0, 15, len(row))
        np.testing.assert_allclose(row[:, 0], np.interp(grid, np.arange(16), cases[index][0]), rtol=1e-5)


def test_path_forms(tmp_path, monkeypatch):
    reference = load_uea(FIXED).dataset["train"]["labels"]
    # the prefix form DIR/Name of DIR/Name_TRAIN.ts
    assert load_uea(FIXED / "TinyFixed").dataset["train"]["labels"] == reference
    # a path to one of the two files
    assert load_uea(FIXED / "TinyFixed_TEST.ts").dataset["train"]["labels"] == reference
    # file names matched case-insensitively, and `name` when the folder is named otherwise
    folder = tmp_path / "tinyfixed"
    folder.mkdir()
    for split in ("TRAIN", "TEST"):
        (folder / f"TINYFIXED_{split}.ts").write_text((FIXED / f"TinyFixed_{split}.ts").read_text())
    assert load_uea(folder).dataset["train"]["labels"] == reference
    other = tmp_path / "elsewhere"
    other.mkdir()
    for split in ("TRAIN", "TEST"):
        (other / f"TinyFixed_{split}.ts").write_text((FIXED / f"TinyFixed_{split}.ts").read_text())
    assert load_uea(other, name="TinyFixed").dataset["train"]["labels"] == reference
    # a relative path that is not under the current folder is looked up in the data folder
    monkeypatch.setenv("POSATTN_DATA_DIR", str(FIXTURES))
    monkeypatch.chdir(tmp_path)
    assert load_uea("TinyVar").num_labels == 3
    # through the registry, as posattn-train calls it
    assert load_builtin_dataset("uea", path=str(FIXED)).modalities == {"series": {"input_dim": 6, "sampling_rate": 1.0}}


def copy_fixture(tmp_path, name="TinyFixed") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for split in ("TRAIN", "TEST"):
        (folder / f"{name}_{split}.ts").write_text((FIXTURES / name / f"{name}_{split}.ts").read_text())
    return folder


def small_split(rng, labels, channels=3, length=5):
    return [rng.standard_normal((channels, length)) for _ in labels], list(labels)


def test_missing_files_name_the_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Nothing_TRAIN\.ts"):
        load_uea(tmp_path / "Nothing")
    folder = copy_fixture(tmp_path)
    (folder / "TinyFixed_TEST.ts").unlink()
    with pytest.raises(FileNotFoundError, match=r"TinyFixed/TinyFixed_TEST\.ts"):
        load_uea(folder)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"sampling_rate": -5.0}, "sampling_rate"),
        ({"sampling_rate": float("nan")}, "sampling_rate"),
        ({"sampling_rate": True}, "sampling_rate"),
        ({"modalities": {}}, "non-empty dict"),
        ({"modalities": {"acc": []}}, "Modality 'acc' is empty"),
        ({"modalities": {"acc": [0, 1.5]}}, "Modality 'acc': channel indices must be integers"),
        ({"modalities": {"acc": "012"}}, "Modality 'acc': channels must be a list"),
        ({"modalities": {"labels": [0]}}, "Modality name 'labels'"),
        ({"modalities": {"acc": [0, 1], "gyro": [1, 2]}}, "Channel 1 is used in 'acc' and 'gyro'"),
        ({"modalities": {"acc": [0, 0]}}, "Channel 0 is used twice in modality 'acc'"),
        ({"modalities": {"acc": [0, 1, 2], "gyro": [3, 4, 6]}}, r"Modality 'gyro': channel indices \[6\] are outside the data.*6 channels"),
        ({"modalities": {"acc": [-1]}}, r"Modality 'acc': channel indices \[-1\] are outside"),
        ({"vary_length": {"kind": "stretch"}}, "vary_length.kind"),
        ({"vary_length": {"kind": "crop", "min_fraction": 0.5, "max_fraction": 1.5}}, "crop needs 0 < min_fraction"),
        ({"vary_length": {"kind": "resample", "min_fraction": 0.0}}, "resample needs 0 < min_fraction"),
        ({"vary_length": {"kind": "crop", "min_fraction": float("nan")}}, "finite numbers"),
        ({"vary_length": {"kind": "crop", "fraction": 0.5}}, "keys kind, min_fraction, max_fraction"),
    ],
)
def test_bad_options_are_refused_naming_the_option_or_modality(options, match):
    with pytest.raises(ValueError, match=match):
        load_uea(FIXED, **options)


def test_bad_files_are_refused_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    classes = ["a", "b"]

    def dataset(name, train, test, train_classes=classes, test_classes=classes):
        folder = tmp_path / name
        write_ts(folder / f"{name}_TRAIN.ts", *train, train_classes)
        write_ts(folder / f"{name}_TEST.ts", *test, test_classes)
        return folder

    with_gap = small_split(rng, ["a", "b"])
    with_gap[0][1][2, 3] = np.nan  # written as `?`
    folder = dataset("Missing", small_split(rng, ["a", "b"]), with_gap)
    with pytest.raises(ValueError, match=r"Missing_TEST\.ts, line \d+: missing value .* channel 2 of series 1"):
        load_uea(folder)
    nan_text = tmp_path / "NanText"
    write_ts(nan_text / "NanText_TRAIN.ts", *small_split(rng, ["a", "b"]), classes)
    write_ts(nan_text / "NanText_TEST.ts", *small_split(rng, ["a", "b"]), classes)
    text = (nan_text / "NanText_TRAIN.ts").read_text().splitlines()
    text[-1] = "NaN," + text[-1].split(",", 1)[1]  # a literal NaN
    (nan_text / "NanText_TRAIN.ts").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"NanText_TRAIN\.ts, line \d+: missing value"):
        load_uea(nan_text)

    folder = dataset("Channels", small_split(rng, ["a", "b"], channels=3), small_split(rng, ["a", "b"], channels=4))
    with pytest.raises(ValueError, match=r"different numbers of channels: 3 in .*Channels_TRAIN\.ts, 4 in .*Channels_TEST\.ts"):
        load_uea(folder)

    folder = dataset("Unseen", small_split(rng, ["a", "a"]), small_split(rng, ["a", "b"]))
    with pytest.raises(ValueError, match=r"Unseen_TEST\.ts: test labels \['b'\] never occur in the training file"):
        load_uea(folder)

    folder = dataset("Undeclared", small_split(rng, ["a", "b"]), small_split(rng, ["a", "c"]), test_classes=["a", "b"])
    with pytest.raises(ValueError, match=r"Undeclared_TEST\.ts: labels \['c'\] are not in the header's `@classLabel` list"):
        load_uea(folder)

    folder = dataset("Headers", small_split(rng, ["a", "b"]), small_split(rng, ["a", "b"]), test_classes=["a", "b", "z"])
    with pytest.raises(ValueError, match=r"Headers_TEST\.ts: `@classLabel` lists"):
        load_uea(folder)

    folder = dataset("Ragged", small_split(rng, ["a", "b"]), small_split(rng, ["a", "b"]))
    lines = (folder / "Ragged_TRAIN.ts").read_text().splitlines()
    lines[-1] = "1,2:" + lines[-1]  # one more channel in the last case
    (folder / "Ragged_TRAIN.ts").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"Ragged_TRAIN\.ts, line \d+: .*(channels|lengths)"):
        load_uea(folder)


@needs_natops
def test_natops_through_the_uea_loader_matches_the_natops_loader():
    from modeling_posattn.toolkit.data.natops import load_natops, natops_groupings

    parts = natops_groupings()["parts"]
    uea = load_uea(default_data_dir() / "natops", modalities=parts, sampling_rate=25)
    natops = load_natops(grouping="parts")
    assert uea.modalities == natops.modalities and uea.label_names == natops.label_names
    for split in ("train", "test"):
        assert uea.dataset[split]["labels"] == natops.dataset[split]["labels"]
        for index in (0, 91, 179):
            a, b = uea.dataset[split][index], natops.dataset[split][index]
            for name in parts:
                np.testing.assert_array_equal(a[name], b[name])
                np.testing.assert_allclose(a["timestamps"][name], b["timestamps"][name])
    single = load_uea("natops")  # relative: found in the shared data folder
    assert single.modalities == {"series": {"input_dim": 24, "sampling_rate": 1.0}}
    assert np.asarray(single.dataset["test"][0]["series"]).shape == (51, 24)


def test_train_script_with_the_uea_recipe_end_to_end(tmp_path, monkeypatch, capsys):
    output_dir = tmp_path / "OUT"
    options = {"path": str(FIXED), "modalities": {"acc": [0, 1, 2], "gyro": [3, 4, 5]}, "sampling_rate": 10}
    argv = ["scripts/train.py", "--config", "configuration/uea.json", "--dataset_name", "uea", "--dataset_options",
            json.dumps(options), "--seed", "1", "--output_dir", str(output_dir), "--num_train_epochs", "1",
            "--disable_tqdm", "true"]
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_status:
        runpy.run_path(str(ROOT / "scripts" / "train.py"), run_name="__main__")
    assert exit_status.value.code == 0
    assert "| test |" in capsys.readouterr().out
    results = json.loads((output_dir / "test_results.json").read_text())
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["test_samples"] == 12
    config = json.loads((output_dir / "config.json").read_text())
    assert sorted(config["modalities"]) == ["acc", "gyro"] and config["id2label"]["2"] == "10"
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 2  # 24 rows / batch 16, one epoch: every training row trains (no validation carve)
    assert not (output_dir / "eval_results.json").exists()


def test_uea_recipe_is_package_data_and_a_fixed_budget(tmp_path, monkeypatch):
    from modeling_posattn.toolkit.cli import parse_args

    monkeypatch.chdir(tmp_path)  # found through importlib.resources, from any folder
    model_args, data_args, training_args, _ = parse_args(["--config", "uea"])
    assert data_args.dataset_name == "uea" and data_args.dataset_options == {"path": "natops"}
    assert data_args.validation_split_percentage == 0 and training_args.eval_strategy == "no"
    assert not training_args.load_best_model_at_end and training_args.label_smoothing_factor == 0.1
    assert training_args.torch_num_threads == 1
    options = json.dumps({"path": "DIR/Name", "sampling_rate": 10})
    _, data_args, _, _ = parse_args(["--config", "uea", "--dataset_name", "uea", "--dataset_options", options])
    assert json.loads(data_args.dataset_options) == {"path": "DIR/Name", "sampling_rate": 10}  # replaces, not merges

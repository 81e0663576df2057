"""NATOPS loader: official split, channel groupings checked against the raw file, multi-rate timestamps, and training."""

import numpy as np
import pytest

from _loader_checks import assert_processor_layout, assert_trains, encode
from modeling_posattn.toolkit.data import load_builtin_dataset
from modeling_posattn.toolkit.data._common import data_available, default_data_dir
from modeling_posattn.toolkit.data.natops import load_natops, read_ts

REQUIRED = ("NATOPS_TRAIN.ts", "NATOPS_TEST.ts")
needs_data = pytest.mark.skipif(
    not data_available(None, "natops", REQUIRED),
    reason=f"NATOPS data not found: needs {default_data_dir() / 'natops'} with {REQUIRED} (or set POSATTN_DATA_DIR)",
)


def raw_first_train_sample():
    """The first series of NATOPS_TRAIN.ts parsed by hand (independently of `read_ts`): 24 x 51 values, label."""
    with open(default_data_dir() / "natops" / "NATOPS_TRAIN.ts", encoding="utf-8", errors="replace") as handle:
        lines = iter(handle)
        for line in lines:
            if line.strip().lower() == "@data":
                break
        fields = next(lines).strip().split(":")
    return np.array([[float(v) for v in f.split(",")] for f in fields[:-1]]), fields[-1]


@pytest.fixture(scope="module")
def parts():
    return load_natops()


@needs_data
def test_official_split_and_layout(parts):
    assert {name: len(split) for name, split in parts.dataset.items()} == {"train": 180, "test": 180}
    assert list(parts.modalities) == ["hand_tips", "elbows", "wrists", "thumbs"]
    assert all(spec == {"input_dim": 6, "sampling_rate": 25.0} for spec in parts.modalities.values())
    assert parts.label_names == ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0"] and parts.num_labels == 6
    assert parts.problem_type == "single_label_classification"
    assert_processor_layout(parts, with_timestamps=True)
    row = parts.dataset["test"][7]
    for name in parts.modalities:
        assert np.asarray(row[name]).shape == (51, 6)
        np.testing.assert_allclose(row["timestamps"][name], np.arange(51) / 25.0)
    for split in parts.dataset.values():
        assert sorted(set(split["labels"])) == list(range(6))


@needs_data
def test_groupings_match_the_raw_file(parts):
    raw, label = raw_first_train_sample()
    assert raw.shape == (24, 51)
    row = parts.dataset["train"][0]
    assert parts.label_names[row["labels"]] == label
    for name, channels in {"hand_tips": [0, 1, 2, 3, 4, 5], "elbows": [6, 7, 8, 9, 10, 11],
                           "wrists": [12, 13, 14, 15, 16, 17], "thumbs": [18, 19, 20, 21, 22, 23]}.items():  # fmt: skip
        np.testing.assert_allclose(row[name], raw[channels].T, rtol=1e-6, atol=1e-6)

    sensors = load_natops(grouping="sensors")
    assert list(sensors.modalities) == [
        "hand_tip_left", "hand_tip_right", "elbow_left", "elbow_right",
        "wrist_left", "wrist_right", "thumb_left", "thumb_right",
    ]  # fmt: skip
    assert all(spec["input_dim"] == 3 for spec in sensors.modalities.values())
    row = sensors.dataset["train"][0]
    for k, name in enumerate(sensors.modalities):
        np.testing.assert_allclose(row[name], raw[3 * k : 3 * k + 3].T, rtol=1e-6, atol=1e-6)

    single = load_natops(grouping="single")
    assert single.modalities == {"all_sensors": {"input_dim": 24, "sampling_rate": 25.0}}
    np.testing.assert_allclose(single.dataset["train"][0]["all_sensors"], raw.T, rtol=1e-6, atol=1e-6)

    custom = load_natops(grouping={"right_tip_z_and_left_tip_x": [5, 0]}, sampling_rate=10)
    assert custom.modalities == {"right_tip_z_and_left_tip_x": {"input_dim": 2, "sampling_rate": 10.0}}
    row = custom.dataset["train"][0]
    np.testing.assert_allclose(row["right_tip_z_and_left_tip_x"], raw[[5, 0]].T, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(row["timestamps"]["right_tip_z_and_left_tip_x"], np.arange(51) / 10.0)


@needs_data
def test_multirate_keeps_true_timestamps():
    bundle = load_natops(multirate=True)
    raw, _ = raw_first_train_sample()
    rates = {name: spec["sampling_rate"] for name, spec in bundle.modalities.items()}
    assert rates == pytest.approx({"hand_tips": 25.0, "elbows": 12.5, "wrists": 25.0 / 3, "thumbs": 6.25})
    row = bundle.dataset["train"][0]
    for name, step, first in (("hand_tips", 1, 0), ("elbows", 2, 6), ("wrists", 3, 12), ("thumbs", 4, 18)):
        kept = np.arange(0, 51, step)
        np.testing.assert_allclose(row["timestamps"][name], kept / 25.0)
        np.testing.assert_allclose(row[name], raw[first : first + 6][:, kept].T, rtol=1e-6, atol=1e-6)
    assert len(row["elbows"]) == 26 and row["timestamps"]["elbows"][:3] == pytest.approx([0.0, 0.08, 0.16])
    assert len(row["wrists"]) == 17 and len(row["thumbs"]) == 13 and row["timestamps"]["thumbs"][-1] == pytest.approx(48 / 25)
    # the processor keeps the true times (not i / rate of some other clock)
    _, encoded = encode(bundle, n=2)
    times, modality_ids = np.asarray(encoded[0]["timestamps"]), np.asarray(encoded[0]["modality_ids"])
    np.testing.assert_allclose(times[modality_ids == 1], np.arange(0, 51, 2) / 25.0, rtol=1e-6)
    np.testing.assert_allclose(times[modality_ids == 3], np.arange(0, 51, 4) / 25.0, rtol=1e-6)
    # sensors inherit their body part's rate; a modality mixing parts is refused
    sensors = load_natops(grouping="sensors", multirate=True)
    assert sensors.modalities["elbow_right"]["sampling_rate"] == 12.5
    assert len(sensors.dataset["test"][0]["thumb_left"]) == 13
    with pytest.raises(ValueError, match="mixes"):
        load_natops(grouping="single", multirate=True)


@needs_data
def test_each_loader_output_trains(parts):
    assert_trains(parts, n=24)
    assert_trains(load_builtin_dataset("natops", multirate=True), n=24)


def test_bad_options_and_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="natops"):
        load_natops(data_dir=tmp_path)
    with pytest.raises(ValueError, match="grouping"):
        load_natops(data_dir=tmp_path, grouping="hands")
    with pytest.raises(ValueError, match="channels"):
        load_natops(data_dir=tmp_path, grouping={"x": [24]})
    with pytest.raises(ValueError, match="sampling_rate"):
        load_natops(data_dir=tmp_path, sampling_rate=0)


def test_read_ts_parses_and_rejects(tmp_path):
    good = tmp_path / "good.ts"
    good.write_text("# comment\n@problemName X\n@classLabel true a b\n@data\n1,2,3:4,?,6:b\n7,8,9:10,11,12:a\n\n")
    values, labels = read_ts(good)
    assert values.shape == (2, 2, 3) and labels == ["b", "a"]
    assert np.isnan(values[0, 1, 1]) and values[1, 1, 2] == 12
    ragged = tmp_path / "ragged.ts"
    ragged.write_text("@data\n1,2,3:4,5:a\n")
    with pytest.raises(ValueError, match="line 2"):
        read_ts(ragged)
    with pytest.raises(ValueError, match="@data"):
        (tmp_path / "empty.ts").write_text("# nothing\n")
        read_ts(tmp_path / "empty.ts")


def test_timing_windows_tell_the_label_only_by_relative_timing():
    from modeling_posattn.toolkit.data.natops import timing_windows

    count, shift = 4000, 5
    steps = np.arange(51, dtype=float)
    values = np.broadcast_to(steps, (count, 4, 51)).copy()  # every channel holds its step index: the window start shows
    groups = {"a": [0], "b": [1], "target": [2, 3]}
    streams, labels = timing_windows(values, groups, {"modality": "target", "shift_steps": shift}, np.random.default_rng(0))
    assert all(stream.shape[-1] == 51 - shift for stream in streams.values()) and streams["target"].shape[1] == 2
    late = {name: stream[:, 0, 0] == shift for name, stream in streams.items()}
    assert all(np.isin(stream[:, 0, 0], [0, shift]).all() for stream in streams.values())
    shifted = np.array(labels) == "shifted"
    assert shifted.sum() == count // 2
    np.testing.assert_array_equal(late["a"], late["b"])  # the other streams always share their window
    np.testing.assert_array_equal(late["target"] != late["a"], shifted)  # the label is exactly the relative timing
    for name in groups:  # ... while each stream alone is early or late with probability 1/2 in both classes
        for in_class in (shifted, ~shifted):
            assert abs(late[name][in_class].mean() - 0.5) < 0.05


@needs_data
def test_timing_task_loader_with_multirate():
    bundle = load_natops(multirate=True, timing_task={"modality": "thumbs", "shift_steps": 8}, seed=1)
    assert bundle.label_names == ["aligned", "shifted"]
    for split in ("train", "test"):
        assert np.bincount(bundle.dataset[split]["labels"]).tolist() == [90, 90]
    row = bundle.dataset["train"][0]
    assert len(row["hand_tips"]) == 43 and len(row["thumbs"]) == 11  # 51 - 8 steps, then every 4th for the thumbs
    np.testing.assert_allclose(row["timestamps"]["thumbs"][:3], [0.0, 0.16, 0.32])
    assert bundle.options["timing_task"] == {"modality": "thumbs", "shift_steps": 8}
    assert "constructed timing task" in bundle.description
    for bad, match in (({"modality": "feet", "shift_steps": 8}, "timing_task.modality"),
                       ({"modality": "thumbs", "shift_steps": 30}, "shift_steps"),
                       ({"modality": "thumbs"}, "timing_task")):
        with pytest.raises(ValueError, match=match):
            load_natops(timing_task=bad)
    with pytest.raises(ValueError, match="at least"):
        load_natops(grouping="single", timing_task={"modality": "all_sensors", "shift_steps": 4})

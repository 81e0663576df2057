"""CMU-MOSI loader on a tiny generated stand-in of MulT's `mosi_data_noalign.pkl` (tests/fixtures/mosi_fixture.pkl)."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from _loader_checks import assert_processor_layout, assert_trains
from conftest import load_script
from modeling_posattn.toolkit.data import load_builtin_dataset
from modeling_posattn.toolkit.data.mosi import load_mosi, strip_padding

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "mosi_fixture.pkl"
SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def generator():
    return load_script(FIXTURES / "make_mosi_fixture.py")


@pytest.fixture(scope="module")
def raw():
    with open(FIXTURE, "rb") as handle:
        return pickle.load(handle)


@pytest.fixture(scope="module")
def expected():
    return generator().make_fixture()[1]


@pytest.fixture(scope="module")
def bundle():
    return load_mosi(FIXTURE)


def test_fixture_matches_its_generator_and_the_mult_layout(raw):
    regenerated, _ = generator().make_fixture()
    assert sorted(raw) == ["test", "train", "valid"]
    for key in raw:
        assert sorted(raw[key]) == ["audio", "id", "labels", "text", "vision"]
        n = len(raw[key]["labels"])
        assert raw[key]["text"].shape == (n, 50, 300) and raw[key]["audio"].shape == (n, 375, 5)
        assert raw[key]["vision"].shape == (n, 500, 20) and raw[key]["labels"].shape == (n, 1, 1)
        for name in ("text", "audio", "vision", "labels"):
            assert raw[key][name].dtype == regenerated[key][name].dtype == np.float32
            np.testing.assert_array_equal(raw[key][name], regenerated[key][name])
        np.testing.assert_array_equal(raw[key]["id"], regenerated[key]["id"])
    assert np.isneginf(raw["train"]["audio"]).any()


def test_round_trip_layout_and_labels(bundle, raw):
    assert bundle.problem_type == "regression" and bundle.num_labels == 1 and bundle.label_names is None
    assert bundle.modalities == {
        "text": {"input_dim": 300, "sampling_rate": None},
        "audio": {"input_dim": 5, "sampling_rate": None},
        "vision": {"input_dim": 20, "sampling_rate": None},
    }
    assert list(bundle.dataset) == ["train", "validation", "test"]
    assert_processor_layout(bundle, with_timestamps=False)
    for key, split in SPLITS.items():
        assert len(bundle.dataset[split]) == len(raw[key]["labels"])
        np.testing.assert_allclose(bundle.dataset[split]["labels"], raw[key]["labels"].reshape(-1))


def test_padding_stripped_and_neginf_zeroed(bundle, raw, expected):
    for key, split in SPLITS.items():
        for i, info in enumerate(expected[key]):
            row = bundle.dataset[split][i]
            for name in ("text", "audio", "vision"):
                length, start = info[name]["length"], info[name]["start"]
                if length == 0:
                    assert row[name] is None, f"{split}[{i}] {name}: an all-zero sequence is a missing modality"
                    continue
                values = np.asarray(row[name])
                assert values.shape == (length, raw[key][name].shape[2]), f"{split}[{i}] {name}"
                assert np.isfinite(values).all()
                original = raw[key][name][i, start : start + length]
                np.testing.assert_array_equal(values, np.where(np.isfinite(original), original, 0.0))
            audio = np.asarray(row["audio"])
            assert (audio == 0).sum() >= info["audio"]["neginf"]
    # the first real audio frame of train[3] is entirely -inf: it is data, not padding, so it stays (as zeros)
    first = np.asarray(bundle.dataset["train"][3]["audio"])[0]
    assert (first == 0).all() and len(bundle.dataset["train"][3]["audio"]) == expected["train"][3]["audio"]["length"]
    # an interior all-zero frame is kept
    vision = np.asarray(bundle.dataset["train"][1]["vision"])
    assert (vision[10] == 0).all() and len(vision) == 150
    assert bundle.options["stats"]["train"]["audio"]["nonfinite_values_zeroed"] == sum(
        info["audio"]["neginf"] for info in expected["train"]
    )


def test_strip_padding_rule():
    frames = np.array([[0, 0], [0, 0], [1, 0], [0, 0], [0, -np.inf], [0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(strip_padding(frames), frames[2:5])
    assert strip_padding(np.zeros((4, 2))).shape == (0, 2)
    nan_first = np.array([[np.nan, 0], [0, 0]])
    assert len(strip_padding(nan_first)) == 1


def test_options(raw):
    kept = load_mosi(FIXTURE, strip_zero_padding=False, audio_sampling_rate=100, vision_sampling_rate=30, max_samples_per_split=2)
    assert kept.modalities["audio"]["sampling_rate"] == 100.0 and kept.modalities["vision"]["sampling_rate"] == 30.0
    assert kept.modalities["text"]["sampling_rate"] is None
    assert len(kept.dataset["train"]) == 2 and len(kept.dataset["validation"]) == 1
    row = kept.dataset["train"][0]
    assert len(row["text"]) == 50 and len(row["audio"]) == 375 and len(row["vision"]) == 500
    assert np.isfinite(np.asarray(row["audio"])).all()


def test_each_loader_output_trains(bundle):
    assert_trains(bundle, n=4)
    assert_trains(load_builtin_dataset("mosi", path=FIXTURE, audio_sampling_rate=100.0, vision_sampling_rate=30.0), n=4)


def test_bad_paths_and_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mosi(tmp_path / "mosi_data_noalign.pkl")
    with pytest.raises(FileNotFoundError):
        load_mosi(tmp_path)  # a folder is not a pickle: nothing is searched for
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as handle:
        pickle.dump({"train": {}, "valid": {}, "test": {}}, handle)
    with pytest.raises(ValueError, match="lacks"):
        load_mosi(bad)
    data, _ = generator().make_fixture()
    data["train"]["labels"] = np.zeros((4, 4, 2), dtype=np.float32)  # IEMOCAP-style labels
    with open(bad, "wb") as handle:
        pickle.dump(data, handle)
    with pytest.raises(ValueError, match="one sentiment score"):
        load_mosi(bad)

"""AV-digits loader: the FSDD/MNIST protocol (split sizes, pools, pairing), determinism, degradations, and training."""

import numpy as np
import pytest

from _loader_checks import assert_processor_layout, assert_trains
from modeling_posattn.toolkit.data import load_builtin_dataset
from modeling_posattn.toolkit.data._common import data_available, default_data_dir
from modeling_posattn.toolkit.data.av_digits import (
    AV_DIGITS_PREPARATION_VERSION,
    LogMel,
    add_noise_at_snr,
    av_digits_pairs,
    load_av_digits,
    read_idx,
    read_wav,
)

needs_data = pytest.mark.skipif(
    not (data_available(None, "fsdd/recordings") and data_available(None, "mnist", ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))),
    reason=f"AV-digits data not found: needs {default_data_dir()}/fsdd/recordings and mnist/t10k-* (or set POSATTN_DATA_DIR)",
)
N = 40  # rows per split in the loading tests (the protocol itself is checked on all 3000 clips via av_digits_pairs)
CLEAN = {"audio_noise_snr_db": None, "image_noise_std": 0, "image_occlusion": 0}


def mnist():
    folder = default_data_dir() / "mnist"
    return read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def default_bundle():
    return load_av_digits(max_clips_per_split=N)


@pytest.fixture(scope="module")
def clean_bundle():
    return load_av_digits(max_clips_per_split=N, **CLEAN)


@needs_data
def test_protocol_split_sizes_pools_and_pairing():
    images, labels = mnist()
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    pairs = av_digits_pairs()
    assert {split: len(rows) for split, rows in pairs.items()} == {"train": 2700, "test": 300}
    pools = {"train": range(0, 8000), "test": range(8000, 10000)}
    for split, rows in pairs.items():
        assert all((row["recording_index"] <= 4) == (split == "test") for row in rows)
        assert np.bincount([row["digit"] for row in rows]).tolist() == [len(rows) // 10] * 10
        indices = [row["image_index"] for row in rows]
        assert all(i in pools[split] for i in indices), split
        assert len(set(indices)) == len(indices), f"{split}: an image is used twice"
        assert all(labels[row["image_index"]] == row["digit"] for row in rows), "pairing digit mismatch"
        assert all(row["clip"].startswith(f"{row['digit']}_{row['speaker']}_") for row in rows)
    # the pairing is seeded: same seed same pairs, another seed other pairs
    assert av_digits_pairs(seed=0) == pairs
    other = av_digits_pairs(seed=1)
    assert [r["clip"] for r in other["test"]] == [r["clip"] for r in pairs["test"]]
    assert [r["image_index"] for r in other["test"]] != [r["image_index"] for r in pairs["test"]]


@needs_data
def test_rows_follow_the_pairs(clean_bundle):
    images, mnist_labels = mnist()
    assert {name: len(split) for name, split in clean_bundle.dataset.items()} == {"train": N, "test": N}
    assert clean_bundle.modalities == {"audio": {"input_dim": 40, "sampling_rate": 100.0}, "image": {"input_dim": 28, "sampling_rate": None}}
    assert clean_bundle.label_names == [str(d) for d in range(10)]
    assert_processor_layout(clean_bundle, with_timestamps=False)
    pairs = av_digits_pairs(max_clips_per_split=N)
    log_mel = LogMel()
    for split, rows in pairs.items():
        data = clean_bundle.dataset[split]
        assert data["labels"] == [row["digit"] for row in rows]
        for i in (0, len(rows) - 1):
            row, sample = rows[i], data[i]
            assert mnist_labels[row["image_index"]] == sample["labels"]
            np.testing.assert_allclose(sample["image"], images[row["image_index"]] / 255.0, atol=1e-6)
            waveform = read_wav(default_data_dir() / "fsdd" / "recordings" / row["clip"])
            expected = log_mel(waveform)
            assert expected.shape == (1 + len(waveform) // 80, 40)
            np.testing.assert_allclose(sample["audio"], expected, rtol=1e-5, atol=1e-5)


@needs_data
def test_options_recorded_and_deterministic(default_bundle):
    options = default_bundle.options
    assert default_bundle.preparation_version == AV_DIGITS_PREPARATION_VERSION == "1"
    for key in ("audio_noise_snr_db", "image_noise_std", "image_occlusion", "image_layout", "modalities", "seed", "max_clips_per_split"):
        assert key in options, key
    assert options["seed"] == 0 and options["audio_noise_snr_db"] is not None and options["image_noise_std"] > 0
    again = load_builtin_dataset("av_digits", max_clips_per_split=N)
    for split in ("train", "test"):
        for i in (0, 5):
            assert again.dataset[split][i] == default_bundle.dataset[split][i]
    reseeded = load_av_digits(max_clips_per_split=N, seed=1)
    assert reseeded.dataset["test"][0]["image"] != default_bundle.dataset["test"][0]["image"]


@needs_data
def test_degradations_change_data_only_when_enabled(clean_bundle):
    clean = clean_bundle.dataset["test"]
    audio_only = load_av_digits(max_clips_per_split=N, **{**CLEAN, "audio_noise_snr_db": 0.0}).dataset["test"]
    noise_only = load_av_digits(max_clips_per_split=N, **{**CLEAN, "image_noise_std": 0.5}).dataset["test"]
    occluded = load_av_digits(max_clips_per_split=N, **{**CLEAN, "image_occlusion": 8}).dataset["test"]
    for i in (0, 1):
        assert audio_only[i]["image"] == clean[i]["image"]
        assert not np.allclose(audio_only[i]["audio"], clean[i]["audio"])
        assert noise_only[i]["audio"] == occluded[i]["audio"] == clean[i]["audio"]
        noisy = np.asarray(noise_only[i]["image"])
        assert not np.allclose(noisy, clean[i]["image"]) and noisy.min() >= 0 and noisy.max() <= 1
        changed = np.asarray(occluded[i]["image"]) != np.asarray(clean[i]["image"])
        rows, cols = np.nonzero(changed)
        assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8  # inside one 8 x 8 square
        assert (np.asarray(occluded[i]["image"])[changed] == 0).all()


def test_noise_has_the_requested_snr():
    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(80000) * 0.05).astype(np.float32)
    for snr in (10.0, 0.0, -5.0):
        noise = add_noise_at_snr(clean, snr, rng) - clean
        measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.1)


@needs_data
def test_layouts_and_unimodal_variants(clean_bundle):
    patches = load_av_digits(max_clips_per_split=N, image_layout="patches", modalities=("image",), **CLEAN)
    assert patches.modalities == {"image": {"input_dim": 49, "sampling_rate": None}}
    assert patches.dataset["test"].column_names == ["image", "labels"]
    image = np.asarray(clean_bundle.dataset["test"][0]["image"])
    tokens = np.asarray(patches.dataset["test"][0]["image"])
    assert tokens.shape == (16, 49)
    np.testing.assert_allclose(tokens[0], image[:7, :7].reshape(-1))
    np.testing.assert_allclose(tokens[6], image[7:14, 14:21].reshape(-1))
    audio = load_av_digits(max_clips_per_split=N, modalities=["audio"], **CLEAN)
    assert list(audio.modalities) == ["audio"] and audio.dataset["test"].column_names == ["audio", "labels"]
    assert audio.dataset["test"][0]["audio"] == clean_bundle.dataset["test"][0]["audio"]
    with pytest.raises(ValueError, match="modalities"):
        load_av_digits(modalities=("video",))


@needs_data
def test_each_loader_output_trains(default_bundle):
    assert_trains(default_bundle, n=N)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="fsdd"):
        load_av_digits(data_dir=tmp_path)
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_av_digits(data_dir=tmp_path)

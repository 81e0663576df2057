"""AV-digits: a spoken digit (FSDD audio) paired with a handwritten image of the same digit (MNIST test images).

The protocol (fixed and versioned by `AV_DIGITS_PREPARATION_VERSION`; see `load_av_digits`):

- audio split by FSDD recording index, as FSDD's README defines it: indices 0-4 of every digit and speaker are the
  test set (300 clips), 5-49 the training set (2700 clips);
- image pools: MNIST test images 0-7999 for training pairs, 8000-9999 for test pairs;
- pairing: the clips of one split and one digit, in sorted order (speaker name, then recording index), take the first
  images of a permutation of that digit's pool drawn by `np.random.default_rng([seed, 1, split_id, digit])` (split_id
  0 train, 1 test), so that no image is used twice within a split;
- degradations (all seeded per clip, so a clip's noise does not depend on which other clips are loaded): white
  Gaussian noise on the waveform at a given SNR, then Gaussian pixel noise and/or an occluding square on the image.
"""

import os
import zlib
from collections.abc import Sequence

import datasets
import numpy as np

from . import BuiltinDataset
from ._common import arrow_dataset, frames_column, frames_feature, resolve_data_dir
from .av_digits_features import (  # noqa: F401  (re-exported: the loader's building blocks)
    AUDIO_SAMPLING_RATE,
    FFT_LENGTH,
    FRAME_RATE,
    HOP_LENGTH,
    MEL_FLOOR,
    NUM_MEL_BINS,
    TEST_RECORDING_INDICES,
    WINDOW_LENGTH,
    LogMel,
    add_noise_at_snr,
    degrade_image,
    image_tokens,
    list_fsdd_clips,
    read_idx,
    read_wav,
)

AV_DIGITS_PREPARATION_VERSION = "1"

# Defaults of the degradations, chosen with `scripts/check_av_digits_difficulty.py` so that each modality alone is
# clearly worse than the two fused (see the numbers in that script's docstring).
DEFAULT_AUDIO_NOISE_SNR_DB = 0.0
DEFAULT_IMAGE_NOISE_STD = 0.5
DEFAULT_IMAGE_OCCLUSION = 8

SPLITS = ("train", "test")
IMAGE_POOLS = {"train": (0, 8000), "test": (8000, 10000)}  # MNIST test-set image indices [start, stop)
_SPLIT_IDS = {"train": 0, "test": 1}
_STREAM_PAIRING, _STREAM_AUDIO_NOISE, _STREAM_IMAGE_NOISE, _STREAM_OCCLUSION, _STREAM_SUBSAMPLE = 1, 2, 3, 4, 5

AV_DIGITS_CITATION = """@misc{jackson2018fsdd,
  title={Free Spoken Digit Dataset: v1.0.8}, author={Jackson, Zohar and Souza, C{\\'e}sar and Flaks, Jason and
  Pan, Yuxin and Nicolas, Hereman and Thite, Adhish}, year={2018}, publisher={Zenodo}, doi={10.5281/zenodo.1342401}
}
@article{lecun1998mnist,
  title={Gradient-based learning applied to document recognition}, author={LeCun, Yann and Bottou, L{\\'e}on and
  Bengio, Yoshua and Haffner, Patrick}, journal={Proceedings of the IEEE}, volume={86}, number={11}, year={1998}
}
@inproceedings{liang2021multibench,
  title={MultiBench: Multiscale Benchmarks for Multimodal Representation Learning}, author={Liang, Paul Pu and others},
  booktitle={NeurIPS Datasets and Benchmarks Track}, year={2021}
}"""


# ---------------------------------------------------------------------------------------------------------------------
# Raw files
# ---------------------------------------------------------------------------------------------------------------------


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, *keys])


def _clip_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


# ---------------------------------------------------------------------------------------------------------------------
# Protocol: pairing and subsampling
# ---------------------------------------------------------------------------------------------------------------------


def pair_clips_with_images(clips: list[dict], image_labels: np.ndarray, seed: int) -> dict[str, list[dict]]:
    """Split -> its clips (sorted by digit, speaker, index), each with `image_index`: an MNIST test image of the same
    digit from the split's pool, drawn without replacement with the fixed seed (see the module docstring)."""
    pairs = {}
    for split in SPLITS:
        start, stop = IMAGE_POOLS[split]
        rows = [dict(c) for c in clips if c["split"] == split]
        for digit in range(10):
            members = [row for row in rows if row["digit"] == digit]
            pool = start + np.flatnonzero(image_labels[start:stop] == digit)
            if len(members) > len(pool):
                raise ValueError(f"AV-digits {split}: {len(members)} clips of digit {digit} but only {len(pool)} images.")
            chosen = _rng(seed, _STREAM_PAIRING, _SPLIT_IDS[split], digit).permutation(pool)[: len(members)]
            for row, image_index in zip(sorted(members, key=lambda r: (r["speaker"], r["recording_index"])), chosen):
                row["image_index"] = int(image_index)
        pairs[split] = rows
    return pairs


def _subsample(rows: list[dict], max_clips: int | None, split: str, seed: int) -> list[dict]:
    if max_clips is None or max_clips >= len(rows):
        return rows
    keep = np.sort(_rng(seed, _STREAM_SUBSAMPLE, _SPLIT_IDS[split]).permutation(len(rows))[:max_clips])
    return [rows[i] for i in keep]


def _folders(data_dir):
    recordings = resolve_data_dir(data_dir, "fsdd/recordings")
    mnist = resolve_data_dir(data_dir, "mnist", required=("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    return recordings, mnist


def av_digits_pairs(
    data_dir: str | os.PathLike | None = None, seed: int = 0, max_clips_per_split: int | None = None
) -> dict[str, list[dict]]:
    """The protocol's rows without features: split -> list of `{"clip", "digit", "speaker", "recording_index",
    "split", "image_index"}`, in the order of the rows that [`load_av_digits`] returns with the same arguments."""
    recordings, mnist = _folders(data_dir)
    image_labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    pairs = pair_clips_with_images(list_fsdd_clips(recordings), image_labels, seed)
    return {split: _subsample(rows, max_clips_per_split, split, seed) for split, rows in pairs.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Features and degradations
# ---------------------------------------------------------------------------------------------------------------------


def load_av_digits(
    data_dir: str | os.PathLike | None = None,
    audio_noise_snr_db: float | None = DEFAULT_AUDIO_NOISE_SNR_DB,
    image_noise_std: float | None = DEFAULT_IMAGE_NOISE_STD,
    image_occlusion: int | None = DEFAULT_IMAGE_OCCLUSION,
    image_layout: str = "rows",
    modalities: Sequence[str] = ("audio", "image"),
    max_clips_per_split: int | None = None,
    seed: int = 0,
) -> BuiltinDataset:
    """AV-digits: FSDD spoken digits paired with MNIST handwritten digits, 10 classes, splits `train` (2700) / `test` (300).

    Reads `<data_dir>/fsdd/recordings/*.wav` and `<data_dir>/mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz`
    (`data_dir` defaults to `$POSATTN_DATA_DIR`, else `../shared/data` relative to the project root;
    `FileNotFoundError` names the folder when it is absent). The split, the image pools and the seeded pairing follow
    the protocol in this module's docstring (version `AV_DIGITS_PREPARATION_VERSION`); [`av_digits_pairs`] returns
    which clip and which MNIST image make each row.

    Modalities:
        `audio`: log-mel frames (T x 40) at 100 Hz (see [`LogMel`]), T = 1 + samples // 80.
        `image`: pixels scaled to [0, 1]; `image_layout="rows"`: 28 tokens of 28 floats, or `"patches"`: 16 tokens of
            49 floats. No clock (`sampling_rate` None): the processor spreads the image tokens over the clip's duration.

    Degradations (audio off with None; image ones off with 0 or None; seeded per clip from `seed`, so every number is reproducible):
        audio_noise_snr_db: white Gaussian noise added to the waveform at this SNR in dB, relative to the clip's mean
            power (default 0 dB).
        image_noise_std: Gaussian noise of this std added to the [0, 1] pixels, then clipped to [0, 1] (default 0.5).
        image_occlusion: side in pixels of a square set to 0 at a uniform random position inside the image, applied
            before the noise (default 8).
        The defaults make each modality alone clearly worse than the fused pair; see
        `scripts/check_av_digits_difficulty.py` for the measured numbers.

    Args:
        modalities: `("audio", "image")` (default), `("audio",)` or `("image",)`: the unimodal variants keep exactly
            the same rows (same pairing, same degradations) for unimodal baselines.
        max_clips_per_split: keep a seeded random subset of at most this many rows per split (row order kept), for
            quick tests; None keeps all.
        seed: seeds the pairing, the degradations and the subsampling.
    """
    modalities = tuple(modalities)
    if not modalities or any(m not in ("audio", "image") for m in modalities) or len(set(modalities)) != len(modalities):
        raise ValueError(f"`modalities` must be a non-empty subset of ('audio', 'image'), got {modalities!r}.")
    modalities = tuple(m for m in ("audio", "image") if m in modalities)
    if image_layout not in ("rows", "patches"):
        raise ValueError(f"`image_layout` must be 'rows' or 'patches', got {image_layout!r}.")
    image_noise_std = float(image_noise_std or 0.0)
    if image_noise_std < 0:
        raise ValueError(f"`image_noise_std` must be >= 0, got {image_noise_std}.")
    image_occlusion = int(image_occlusion or 0)
    if not 0 <= image_occlusion <= 28:
        raise ValueError(f"`image_occlusion` must be a square side in pixels in [0, 28], got {image_occlusion}.")
    if audio_noise_snr_db is not None:
        audio_noise_snr_db = float(audio_noise_snr_db)
    if max_clips_per_split is not None and max_clips_per_split < 1:
        raise ValueError(f"`max_clips_per_split` must be a positive int or None, got {max_clips_per_split}.")

    recordings, mnist = _folders(data_dir)
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    pairs = av_digits_pairs(data_dir, seed=seed, max_clips_per_split=max_clips_per_split)
    log_mel = LogMel()

    image_dim = 28 if image_layout == "rows" else 49
    spec = {"audio": {"input_dim": NUM_MEL_BINS, "sampling_rate": FRAME_RATE}, "image": {"input_dim": image_dim, "sampling_rate": None}}
    spec = {name: spec[name] for name in modalities}
    label_names = [str(d) for d in range(10)]
    features = datasets.Features(
        {**{name: frames_feature() for name in modalities}, "labels": datasets.ClassLabel(names=label_names)}
    )

    splits = {}
    for split, rows in pairs.items():
        audio, image = [], []
        for row in rows:
            key = _clip_key(row["clip"])
            if "audio" in modalities:
                waveform = read_wav(recordings / row["clip"])
                if audio_noise_snr_db is not None:
                    waveform = add_noise_at_snr(waveform, audio_noise_snr_db, _rng(seed, _STREAM_AUDIO_NOISE, key))
                audio.append(log_mel(waveform))
            if "image" in modalities:
                pixels = images[row["image_index"]].astype(np.float32) / 255.0
                pixels = degrade_image(
                    pixels, image_noise_std, image_occlusion,
                    _rng(seed, _STREAM_IMAGE_NOISE, key), _rng(seed, _STREAM_OCCLUSION, key),
                )  # fmt: skip
                image.append(image_tokens(pixels, image_layout))
        columns = {"labels": np.array([row["digit"] for row in rows], dtype=np.int64)}
        if "audio" in modalities:
            columns["audio"] = frames_column(audio, NUM_MEL_BINS)
        if "image" in modalities:
            columns["image"] = frames_column(image, image_dim)
        splits[split] = arrow_dataset(columns, features)

    options = {
        "audio_noise_snr_db": audio_noise_snr_db,
        "image_noise_std": image_noise_std,
        "image_occlusion": image_occlusion,
        "image_layout": image_layout,
        "modalities": list(modalities),
        "max_clips_per_split": max_clips_per_split,
        "seed": seed,
        "audio_features": {
            "sampling_rate": AUDIO_SAMPLING_RATE, "hop_length": HOP_LENGTH, "window_length": WINDOW_LENGTH,
            "fft_length": FFT_LENGTH, "num_mel_bins": NUM_MEL_BINS, "mel_floor": MEL_FLOOR, "window": "hann",
            "mel_scale": "slaney", "power": 2.0, "log": "natural",
        },  # fmt: skip
    }
    return BuiltinDataset(
        dataset=datasets.DatasetDict(splits),
        modalities=spec,
        problem_type="single_label_classification",
        label_names=label_names,
        description=(
            "AV-digits: Free Spoken Digit Dataset clips (log-mel, 100 Hz) paired with an MNIST test image of the same "
            "digit; FSDD split by recording index (0-4 test), MNIST pools 0-7999 train / 8000-9999 test, seeded pairing. "
            f"Modalities {list(modalities)}; degradations: audio SNR {audio_noise_snr_db} dB, image noise std "
            f"{image_noise_std}, occlusion {image_occlusion} px; seed {seed}."
        ),
        source=(
            "FSDD (GitHub Jakobovski/free-spoken-digit-dataset, recordings/, CC BY-SA 4.0) + MNIST test set "
            "(t10k idx files); pairing protocol of this project, version " + AV_DIGITS_PREPARATION_VERSION
        ),
        citation=AV_DIGITS_CITATION,
        preparation_version=AV_DIGITS_PREPARATION_VERSION,
        options=options,
    )


__all__ = ["load_av_digits", "av_digits_pairs", "read_idx", "read_wav", "LogMel", "AV_DIGITS_PREPARATION_VERSION"]

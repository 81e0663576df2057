"""Any UEA/UCR classification dataset in the `.ts` format (`<Name>_TRAIN.ts`, `<Name>_TEST.ts`), fixed or variable
length, with its channels grouped into modalities on one clock."""

import json
import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from . import BuiltinDataset
from ._common import arrow_dataset, default_data_dir, frames_column, frames_feature, struct_column, values_column
from .ts_format import TsFile, parse_ts, sort_labels

UEA_PREPARATION_VERSION = "1"
UEA_DEFAULT_MODALITY = "series"
UEA_DEFAULT_SAMPLING_RATE = 1.0
# Column names the processor's layout already uses: a modality may not take them.
RESERVED_COLUMNS = ("timestamps", "labels")

UEA_CITATION = """@article{bagnall2018uea,
  title={The UEA multivariate time series classification archive, 2018},
  author={Bagnall, Anthony and Dau, Hoang Anh and Lines, Jason and Flynn, Michael and Large, James and Bostrom, Aaron
          and Southam, Paul and Keogh, Eamonn}, journal={arXiv preprint arXiv:1811.00075}, year={2018}
}"""


def _split_file(folder: Path, name: str, split: str) -> Path | None:
    """`<folder>/<name>_<SPLIT>.ts`, matching the file name case-insensitively (`natops/NATOPS_TRAIN.ts`)."""
    wanted = f"{name}_{split}.ts".lower()
    exact = folder / f"{name}_{split}.ts"
    if exact.is_file():
        return exact
    if folder.is_dir():
        for candidate in sorted(folder.iterdir()):
            if candidate.name.lower() == wanted and candidate.is_file():
                return candidate
    return None


def resolve_uea_files(path: str | os.PathLike, name: str | None = None) -> tuple[str, Path, Path]:
    """`(name, train file, test file)` for `path`.

    `path` is the folder `DIR/Name` holding `Name_TRAIN.ts` and `Name_TEST.ts` (file names matched case-insensitively;
    `name` overrides the folder's basename), the prefix `DIR/Name` of `DIR/Name_TRAIN.ts`, or one of the two files.
    A relative path that does not exist from the current folder is also looked up in the data folder
    (`$POSATTN_DATA_DIR`, else `../shared/data`), so `{"path": "natops"}` finds the shared NATOPS copy.
    `FileNotFoundError` names the expected paths.
    """
    given = Path(path).expanduser()
    for suffix in ("_TRAIN.ts", "_TEST.ts"):  # a path to one of the two files: its prefix
        if given.name.upper().endswith(suffix.upper()) and given.is_file():
            given = given.with_name(given.name[: -len(suffix)])
    candidates = [given]
    if not given.is_absolute() and not given.exists() and not Path(f"{given}_TRAIN.ts").exists():
        candidates.append(default_data_dir() / given)
    expected = []
    for base in candidates:
        dataset_name = name or base.name
        for folder in (base, base.parent):  # DIR/Name/Name_TRAIN.ts, then DIR/Name_TRAIN.ts
            files = [_split_file(folder, dataset_name, split) for split in ("TRAIN", "TEST")]
            if all(files):
                return dataset_name, files[0], files[1]
            expected.extend(
                str(folder / f"{dataset_name}_{split}.ts") for split, file in zip(("TRAIN", "TEST"), files) if file is None
            )
    raise FileNotFoundError(
        f"UEA dataset {str(path)!r}: expected the files {' and '.join(dict.fromkeys(expected))} (missing). Give `path` "
        "as the folder DIR/Name holding Name_TRAIN.ts and Name_TEST.ts."
    )


def _check_sampling_rate(sampling_rate) -> float:
    if not isinstance(sampling_rate, Real) or isinstance(sampling_rate, bool) or not math.isfinite(sampling_rate) or sampling_rate <= 0:
        raise ValueError(f"`sampling_rate` must be a positive number of steps per second (Hz), got {sampling_rate!r}.")
    return float(sampling_rate)


def _check_modalities(modalities) -> dict[str, list[int]] | None:
    """Types and shapes of the `modalities` option, before any file is read; ranges are checked against the data."""
    if modalities is None:
        return None
    if not isinstance(modalities, Mapping) or not modalities:
        raise ValueError(f"`modalities` must be a non-empty dict {{modality: [0-based channels]}}, got {modalities!r}.")
    groups = {}
    for name, channels in modalities.items():
        if not isinstance(name, str) or not name or name in RESERVED_COLUMNS:
            raise ValueError(f"Modality name {name!r}: must be a non-empty string other than {list(RESERVED_COLUMNS)}.")
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise ValueError(f"Modality {name!r}: channels must be a list of 0-based channel indices, got {channels!r}.")
        if not channels:
            raise ValueError(f"Modality {name!r} is empty: give it at least one channel index.")
        if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in channels):
            raise ValueError(f"Modality {name!r}: channel indices must be integers, got {list(channels)}.")
        groups[name] = [int(c) for c in channels]
    owner = {}
    for name, channels in groups.items():
        for channel in channels:
            if channel in owner:
                where = f"twice in modality {name!r}" if owner[channel] == name else f"in {owner[channel]!r} and {name!r}"
                raise ValueError(f"Channel {channel} is used {where}: each channel may feed one modality once.")
            owner[channel] = name
    return groups


def _check_files(train: TsFile, test: TsFile) -> list[str]:
    """Missing values, channel counts and labels of the two files; returns the label names (sorted)."""
    for parsed in (train, test):
        if parsed.labels is None:
            raise ValueError(f"{parsed.path}: the file has no class labels (`@classLabel false`); the uea loader classifies.")
        missing = parsed.missing_value_location()
        if missing is not None:
            case, channel = missing
            raise ValueError(
                f"{parsed.path}, line {parsed.line_numbers[case]}: missing value (`?` or NaN) in channel {channel} of "
                f"series {case}. The uea loader does not impute: fill or drop missing values first."
            )
    if train.num_channels != test.num_channels:
        raise ValueError(
            f"Train and test have different numbers of channels: {train.num_channels} in {train.path}, "
            f"{test.num_channels} in {test.path}."
        )
    declared = train.class_labels or test.class_labels
    for parsed in (train, test):
        if declared and parsed.class_labels and set(parsed.class_labels) != set(declared):
            raise ValueError(
                f"{parsed.path}: `@classLabel` lists {parsed.class_labels}, but {train.path} lists {declared}."
            )
        if declared:
            undeclared = sorted(set(parsed.labels) - set(declared))
            if undeclared:
                raise ValueError(f"{parsed.path}: labels {undeclared} are not in the header's `@classLabel` list {declared}.")
    unseen = sorted(set(test.labels) - set(train.labels))
    if unseen:
        raise ValueError(f"{test.path}: test labels {unseen} never occur in the training file {train.path}.")
    return sort_labels(declared or train.labels)


def _check_channels(groups: dict[str, list[int]], num_channels: int, train_path: Path) -> None:
    for name, channels in groups.items():
        outside = [c for c in channels if not 0 <= c < num_channels]
        if outside:
            raise ValueError(
                f"Modality {name!r}: channel indices {outside} are outside the data; {train_path} has {num_channels} "
                f"channels (0-based indices 0..{num_channels - 1})."
            )


def _check_vary_length(vary_length) -> dict | None:
    if vary_length is None:
        return None
    if not isinstance(vary_length, Mapping) or set(vary_length) - {"kind", "min_fraction", "max_fraction"}:
        raise ValueError("`vary_length` must be a mapping with keys kind, min_fraction, max_fraction, got "
                         f"{vary_length!r}.")
    kind = vary_length.get("kind")
    if kind not in ("crop", "resample"):
        raise ValueError(f"`vary_length.kind` must be 'crop' or 'resample', got {kind!r}.")
    low, high = vary_length.get("min_fraction", 0.5), vary_length.get("max_fraction", 1.0)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise ValueError(f"`vary_length` fractions must be finite numbers, got {low!r} and {high!r}.")
    if not 0 < low <= high or (kind == "crop" and high > 1):
        limit = "0 < min_fraction <= max_fraction <= 1" if kind == "crop" else "0 < min_fraction <= max_fraction"
        raise ValueError(f"`vary_length` {kind} needs {limit}, got min_fraction={low}, max_fraction={high}.")
    return {"kind": kind, "min_fraction": float(low), "max_fraction": float(high)}


def vary_series_lengths(series: list[np.ndarray], kind: str, min_fraction: float, max_fraction: float,
                        rng: np.random.Generator) -> list[np.ndarray]:
    """Each `channels x T` series cropped to, or linearly resampled to, `max(2, round(f * T))` steps, f ~ U[min, max]."""
    varied = []
    for values in series:
        length = values.shape[1]
        target = max(2, round(rng.uniform(min_fraction, max_fraction) * length))
        if kind == "crop":
            target = min(target, length)
            start = int(rng.integers(0, length - target + 1))
            varied.append(values[:, start : start + target])
        else:
            grid = np.linspace(0.0, length - 1.0, target)
            varied.append(np.stack([np.interp(grid, np.arange(length), channel) for channel in values]))
    return varied


def load_uea(
    path: str | os.PathLike,
    modalities: Mapping[str, Sequence[int]] | None = None,
    sampling_rate: float = UEA_DEFAULT_SAMPLING_RATE,
    name: str | None = None,
    seed: int = 0,
    vary_length: Mapping[str, Any] | None = None,
) -> BuiltinDataset:
    """A UEA/UCR `.ts` classification dataset on its official train/test split, channels grouped into modalities.

    ```bash
    python scripts/train.py --config configuration/uea.json --dataset_name uea \\
        --dataset_options '{"path": "DIR/Name", "modalities": {"acc": [0, 1, 2], "gyro": [3, 4, 5]}, "sampling_rate": 10}'
    ```

    Args:
        path: the folder `DIR/Name` holding `Name_TRAIN.ts` and `Name_TEST.ts` (see [`resolve_uea_files`]).
        modalities: `{modality: [0-based channel indices]}`; channel 0 is the first `:` field of a case. Without it,
            all channels form one modality `series`. Channels left out are dropped; a channel may feed one modality.
        sampling_rate: steps per second of every channel (default 1 Hz): step k of a series is at `k / sampling_rate`
            seconds, in the `timestamps` column and in each modality's spec.
        name: the file prefix, when it differs from the folder's basename (matched case-insensitively anyway).
        seed: seeds `vary_length`'s draws (nothing else is random: the split is the official one).
        vary_length: a constructed variable-length variant of the set, for studies of length-aware encodings:
            `{"kind": "crop" | "resample", "min_fraction": a, "max_fraction": b}`. Every series of both splits gets
            its own fraction f ~ U[a, b] (drawn from `seed`, per split) and becomes `round(f * T)` steps long (at least
            2): `crop` keeps a random contiguous window (0 < a <= b <= 1; times restart at 0), `resample` linearly
            interpolates the whole series to the new length (0 < a <= b), i.e. the same motion performed faster or
            slower. The description and `options` say so: the lengths are ours, not the archive's.

    Series may have different lengths (`@equalLength false`): each row keeps its own length, and the processor packs
    them. Values are kept as in the file (the processor's normalisation is fitted on `train`).

    Raises (before any Arrow table is built): `FileNotFoundError` naming the expected file paths; `ValueError` naming
    the file for missing values (`?` / NaN), train and test with different numbers of channels, test labels absent
    from train or labels absent from the header's `@classLabel` list, a file without labels; naming the modality for
    a channel index outside the data, a channel used twice, an empty modality; and for a non-positive `sampling_rate`.

    Returns:
        A [`BuiltinDataset`] with splits `train` and `test`: one column per modality (`T x channels` floats),
        `timestamps` (per-modality times in seconds) and `labels` (ClassLabel over the `@classLabel` names, sorted
        numerically when they are all numbers, else as strings).
    """
    rate = _check_sampling_rate(sampling_rate)
    groups = _check_modalities(modalities)
    dataset_name, train_file, test_file = resolve_uea_files(path, name)
    train, test = parse_ts(train_file), parse_ts(test_file)
    label_names = _check_files(train, test)
    variation = _check_vary_length(vary_length)
    if variation is not None:
        for index, parsed in enumerate((train, test)):
            parsed.series = vary_series_lengths(parsed.series, **variation, rng=np.random.default_rng([seed, index]))
    if groups is None:
        groups = {UEA_DEFAULT_MODALITY: list(range(train.num_channels))}
    _check_channels(groups, train.num_channels, train_file)
    label_index = {label: i for i, label in enumerate(label_names)}

    features = datasets.Features(
        {
            **{modality: frames_feature() for modality in groups},
            "timestamps": {modality: datasets.List(datasets.Value("float64")) for modality in groups},
            "labels": datasets.ClassLabel(names=label_names),
        }
    )
    splits, lengths = {}, {}
    for split, parsed in (("train", train), ("test", test)):
        columns = {
            modality: frames_column([series[channels].T for series in parsed.series], dim=len(channels))
            for modality, channels in groups.items()
        }
        times = values_column([np.arange(length) / rate for length in parsed.lengths])
        columns["timestamps"] = struct_column({modality: times for modality in groups})
        columns["labels"] = np.array([label_index[label] for label in parsed.labels], dtype=np.int64)
        splits[split] = arrow_dataset(columns, features)
        lengths[split] = (int(parsed.lengths.min()), int(parsed.lengths.max()))

    equal = all(low == high for low, high in lengths.values()) and lengths["train"] == lengths["test"]
    length_text = (
        f"length {lengths['train'][0]}" if equal
        else "variable length (" + ", ".join(f"{s} {low}-{high}" for s, (low, high) in lengths.items()) + ")"
    )
    return BuiltinDataset(
        dataset=datasets.DatasetDict(splits),
        modalities={modality: {"input_dim": len(channels), "sampling_rate": rate} for modality, channels in groups.items()},
        problem_type="single_label_classification",
        label_names=label_names,
        description=(
            f"{dataset_name} (UEA/UCR .ts files {train_file.name}, {test_file.name}): {train.num_channels} channels, "
            f"{length_text}, official split {len(train.series)}/{len(test.series)}, {len(label_names)} classes, "
            f"{rate:g} Hz. Modalities: "
            + ", ".join(f"{modality} = channels {channels}" for modality, channels in groups.items()) + "."
            + (f" Lengths varied by this loader (vary_length {json.dumps(variation)}, seed {seed})." if variation else "")
        ),
        source=f"UEA/UCR time series classification archive format: {train_file.parent}",
        citation=UEA_CITATION,
        preparation_version=UEA_PREPARATION_VERSION,
        options={
            "path": str(path),
            "name": dataset_name,
            "modalities": {modality: list(channels) for modality, channels in groups.items()},
            "sampling_rate": rate,
            "num_channels": train.num_channels,
            "lengths": {split: list(bounds) for split, bounds in lengths.items()},
            "seed": seed,
            **({"vary_length": variation} if variation else {}),
        },
    )


__all__ = ["load_uea", "resolve_uea_files", "UEA_PREPARATION_VERSION"]

"""The sktime/aeon `.ts` text format of the UEA and UCR archives, read with numpy only.

A `.ts` file is a header of `@key value` lines (`@problemName`, `@timeStamps`, `@missing`, `@univariate`,
`@dimensions`, `@equalLength`, `@seriesLength`, `@classLabel true <names...>`), then `@data` and one case per line:
channels separated by `:`, the values of one channel by `,`, the class label as the last `:` field. `?` marks a
missing value. All channels of one case have the same length; cases may differ in length (`@equalLength false`).
Format reference: aeon `aeon/datasets/_data_loaders.py` (`load_from_ts_file`).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class TsFile:
    """One parsed `.ts` file. `series[i]` is the `channels x length_i` float64 array of case i (`?` -> NaN)."""

    path: Path
    series: list[np.ndarray]
    labels: list[str] | None
    header: dict[str, str] = field(default_factory=dict)  # lower-cased `@key` -> the rest of the line, as written
    class_labels: list[str] | None = None  # the names listed after `@classLabel true`, in file order
    line_numbers: list[int] = field(default_factory=list)  # file line of each case, for error messages

    @property
    def num_channels(self) -> int:
        return self.series[0].shape[0]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.shape[1] for s in self.series], dtype=np.int64)

    def missing_value_location(self) -> tuple[int, int] | None:
        """`(case index, channel)` of the first NaN (a `?` or a literal NaN), or None when every value is present."""
        for index, values in enumerate(self.series):
            bad = np.isnan(values).any(axis=1)
            if bad.any():
                return index, int(np.argmax(bad))
        return None

    def stacked(self) -> np.ndarray:
        """`N x channels x length` (equal-length files only); `ValueError` names the first case of another length."""
        lengths = self.lengths
        if (lengths != lengths[0]).any():
            first = int(np.argmax(lengths != lengths[0]))
            raise ValueError(
                f"{self.path}, line {self.line_numbers[first]}: series has length {lengths[first]}, expected "
                f"{lengths[0]} (the file holds series of different lengths)."
            )
        return np.stack(self.series)


def _parse_channel(text: str) -> np.ndarray:
    try:
        return np.array(text.split(","), dtype=np.float64)  # fast path; also parses "NaN"
    except ValueError:
        return np.array([np.nan if v.strip() in ("?", "") else float(v) for v in text.split(",")], dtype=np.float64)


def parse_ts(path: str | os.PathLike) -> TsFile:
    """Parse a `.ts` file (`@timeStamps false`), equal or unequal length, with or without class labels.

    Raises `FileNotFoundError` naming the path, and `ValueError` naming the file and line for: a `@timeStamps true`
    file, a malformed value, channels of one case with different lengths, a case with another number of channels than
    the first, a `@dimensions` header that disagrees with the data, or no `@data` section / no cases.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .ts file.")
    series, labels, line_numbers, header = [], [], [], {}
    in_data, has_labels, class_labels = False, True, None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    continue
                key, _, value = line[1:].partition(" ")
                key, value = key.lower(), value.strip()
                if key == "data":
                    in_data = True
                    continue
                header[key] = value
                words = value.split()
                if key == "timestamps" and words and words[0].lower() == "true":
                    raise ValueError(f"{path}: `@timeStamps true` files are not supported by this parser.")
                if key == "classlabel" and words:
                    has_labels = words[0].lower() == "true"
                    class_labels = words[1:] if has_labels else None
                continue
            fields = line.split(":")
            if has_labels:
                fields, label = fields[:-1], fields[-1].strip()
                labels.append(label)
            try:
                channels = [_parse_channel(f) for f in fields]
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: cannot parse a value ({error}).") from None
            lengths = {len(c) for c in channels}
            if len(lengths) != 1:
                raise ValueError(f"{path}, line {number}: dimensions have different lengths {sorted(lengths)}.")
            if series and len(channels) != series[0].shape[0]:
                raise ValueError(
                    f"{path}, line {number}: series has {len(channels)} channels, expected {series[0].shape[0]} "
                    "(as the first series)."
                )
            series.append(np.stack(channels))
            line_numbers.append(number)
    if not in_data:
        raise ValueError(f"{path}: no `@data` section found; is this a UEA .ts file?")
    if not series:
        raise ValueError(f"{path}: the `@data` section holds no series.")
    declared = header.get("dimensions", "").strip()
    if declared.isdigit() and int(declared) != series[0].shape[0]:
        raise ValueError(f"{path}: the header says `@dimensions {declared}` but the series have {series[0].shape[0]} channels.")
    return TsFile(path, series, labels if has_labels else None, header, class_labels, line_numbers)


def read_ts(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Parse an equal-length `.ts` file into `(values, labels)`: `values` is `N x channels x length` float64 (`?` /
    missing values become NaN) and `labels` the class strings as written (empty without labels). `ValueError` names
    the line of a malformed or ragged series; see [`parse_ts`]."""
    parsed = parse_ts(path)
    return parsed.stacked(), parsed.labels or []


def sort_labels(labels) -> list[str]:
    """Distinct class names sorted numerically when they all parse as numbers ("2" before "10"), else as strings."""
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


__all__ = ["TsFile", "parse_ts", "read_ts", "sort_labels"]

"""What `PosAttnProcessor` checks before any work starts, each failure a `ValueError`/`TypeError` naming the sample,
modality or row and the problem: one modality's raw values (features, token ids, timestamps) and the packed rows
about to be padded into one batch."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from .configuration_posattn import MAX_FEATURE_MAGNITUDE


def checked_features(value, spec, where, finite: bool = True) -> np.ndarray:
    """A `(T, input_dim)` float64 array of real, finite features of sane magnitude (see `MAX_FEATURE_MAGNITUDE`)."""
    try:
        array = np.asarray(value)
    except ValueError as error:  # numpy's "inhomogeneous shape": frames of different widths
        raise ValueError(f"{where}: features must be a T x {spec['input_dim']} array; frames differ in length ({error}).") from None
    if array.dtype == object or np.iscomplexobj(array) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{where}: features must be a real numeric T x {spec['input_dim']} array, got dtype {array.dtype}.")
    if array.size == 0:
        return np.zeros((0, spec["input_dim"]))
    if array.ndim != 2 or array.shape[1] != spec["input_dim"]:
        raise ValueError(f"{where}: features must have shape (T, {spec['input_dim']}), got {array.shape}.")
    array = array.astype(np.float64)
    if not finite:
        return array
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(f"{where}: features hold NaN or Inf (first at frame {int(np.argmax(bad))}).")
    huge = (np.abs(array) > MAX_FEATURE_MAGNITUDE).any(axis=1)
    if huge.any():
        raise ValueError(
            f"{where}: features exceed {MAX_FEATURE_MAGNITUDE:g} in magnitude (first at frame {int(np.argmax(huge))}); "
            "rescale them (float32 cannot carry them through the model)."
        )
    return array


def checked_token_ids(value, spec, where) -> np.ndarray:
    """A 1-D int64 array of ids inside the modality's vocabulary."""
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise ValueError(f"{where}: token ids must be a 1-D sequence of ints ({error}).") from None
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{where}: token ids must be a 1-D sequence, got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: token ids must be integers, got dtype {array.dtype}.")
    if array.min() < 0 or array.max() >= spec["vocab_size"]:
        raise ValueError(f"{where}: token ids must lie in [0, {spec['vocab_size']}), got {array.min()}..{array.max()}.")
    return array.astype(np.int64)


def checked_times(value, length, where) -> np.ndarray:
    """A modality's own timestamps: one finite, non-negative, non-decreasing float64 time in seconds per token."""
    times = np.asarray(value, dtype=np.float64)
    if times.ndim != 1 or len(times) != length:
        raise ValueError(f"{where}: `timestamps` has shape {times.shape} but the modality has {length} tokens.")
    if not np.isfinite(times).all():
        raise ValueError(f"{where}: `timestamps` hold NaN or Inf.")
    if length and times.min() < 0:
        raise ValueError(f"{where}: `timestamps` must be >= 0 seconds, got {times.min()}.")
    if np.any(np.diff(times) < 0):
        raise ValueError(f"{where}: `timestamps` must be sorted (non-decreasing); position {int(np.argmax(np.diff(times) < 0)) + 1} goes back in time.")
    return times


PACKED_KEYS = ("input_values", "input_ids", "modality_ids", "position_ids", "timestamps", "attention_mask")


def check_rows(rows: list[Mapping[str, Any]], feature_dim: int) -> None:
    """Rows about to be padded into one batch must agree: the same packed keys, every key as long as the row's
    `modality_ids`, features `feature_dim` wide, and numeric labels of one shape (all rows or none). Raises a
    `ValueError`/`TypeError` naming the row and the key."""
    if not rows:
        raise ValueError("Cannot pad an empty list of rows.")
    keys = None
    label_shape = None
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or "modality_ids" not in row:
            raise ValueError(f"Row {index}: expected a packed row (a dict with `modality_ids`), got {type(row).__name__}.")
        row_keys = {key for key in PACKED_KEYS if key in row and row[key] is not None}
        if keys is None:
            keys = row_keys
        elif row_keys != keys:
            raise ValueError(
                f"Row {index} has keys {sorted(row_keys)} but row 0 has {sorted(keys)}: rows of one batch must come "
                "from the same processor."
            )
        length = len(row["modality_ids"])
        for key in row_keys - {"input_values"}:
            if np.ndim(row[key]) != 1 or len(row[key]) != length:
                raise ValueError(f"Row {index}: `{key}` has shape {np.shape(row[key])}, expected ({length},) like its `modality_ids`.")
        if "input_values" in row_keys:
            shape = np.shape(row["input_values"])
            if shape not in ((length, feature_dim), (length * feature_dim,)):
                raise ValueError(f"Row {index}: `input_values` has shape {shape}, expected ({length}, {feature_dim}).")
        label = row.get("labels", row.get("label"))
        if label is not None:
            array = np.asarray(label)
            if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(array):
                raise TypeError(
                    f"Row {index}: `labels` must be numbers (class ids, 0/1 targets or values), got {label!r}; map "
                    "class names to ids first (e.g. with `config.label2id`)."
                )
            if label_shape is not None and array.shape != label_shape:
                raise ValueError(f"Row {index}: `labels` has shape {array.shape} but row 0's has {label_shape}.")
            label_shape = array.shape

"""Helpers shared by the real-data loaders: where the data lives, and fast numpy -> Arrow columns."""

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

DATA_DIR_ENV = "POSATTN_DATA_DIR"


def default_data_dir() -> Path:
    """`$POSATTN_DATA_DIR` when set, else `../shared/data` relative to the current folder (the project's layout: run
    from the repository root, next to `shared/`)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.cwd().parent / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None, subfolder: str, required: Sequence[str] = ()) -> Path:
    """Return `<data_dir>/<subfolder>`, raising `FileNotFoundError` naming the folder (and the missing files) if absent.

    `data_dir` defaults to [`default_data_dir`]. A relative `data_dir` is taken relative to the current directory.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = root / subfolder
    how = (
        f"Pass `data_dir=` (the folder that holds `{subfolder}/`) or set ${DATA_DIR_ENV}; "
        f"by default the loaders read `../shared/data` relative to the current folder ({Path.cwd()})."
    )
    if not folder.is_dir():
        raise FileNotFoundError(f"Data folder {folder} not found: this loader needs `{subfolder}/` inside {root}. {how}")
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"Data folder {folder} lacks {missing}. {how}")
    return folder


def data_available(data_dir: str | os.PathLike | None, subfolder: str, required: Sequence[str] = ()) -> bool:
    try:
        resolve_data_dir(data_dir, subfolder, required)
    except FileNotFoundError:
        return False
    return True


def frames_column(arrays: Sequence[np.ndarray | None], dim: int, dtype=np.float32) -> pa.Array:
    """A list of `T_i x dim` arrays (None: a missing value) -> an Arrow `list<list<float>>` column, without a
    Python-level loop over frames (much faster than `Dataset.from_dict` on large float sequences)."""
    lengths = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int64)
    present = [np.asarray(a, dtype=dtype).reshape(-1, dim) for a in arrays if a is not None]
    flat = np.concatenate([a.reshape(-1) for a in present]) if present else np.zeros(0, dtype=dtype)
    total_frames = int(lengths.sum())
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, total_frames * dim + 1, dim, dtype=np.int32)), pa.array(flat))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    mask = np.array([a is None for a in arrays])
    return pa.ListArray.from_arrays(offsets, inner, mask=pa.array(mask) if mask.any() else None)


def values_column(arrays: Sequence[np.ndarray | None], dtype=np.float64) -> pa.Array:
    """A list of 1-D arrays (None: missing) -> an Arrow `list<value>` column."""
    lengths = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int64)
    present = [np.asarray(a, dtype=dtype).reshape(-1) for a in arrays if a is not None]
    flat = np.concatenate(present) if present else np.zeros(0, dtype=dtype)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    mask = np.array([a is None for a in arrays])
    return pa.ListArray.from_arrays(offsets, pa.array(flat), mask=pa.array(mask) if mask.any() else None)


def frames_feature(dtype: str = "float32") -> datasets.List:
    return datasets.List(datasets.List(datasets.Value(dtype)))


def arrow_dataset(columns: dict[str, pa.Array], features: datasets.Features) -> datasets.Dataset:
    """Columns -> a `datasets.Dataset` with exactly `features` (cast to its Arrow schema)."""
    table = pa.table({name: columns[name] for name in features})
    table = table.cast(features.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def struct_column(fields: dict[str, pa.Array]) -> pa.Array:
    """Named equal-length Arrow columns -> one struct column (e.g. the `timestamps` column)."""
    return pa.StructArray.from_arrays(list(fields.values()), names=list(fields))

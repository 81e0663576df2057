"""Where the data comes from: built-in loaders, local files and folders, Hub datasets; and how it is split.

`dataset_name` is a built-in loader (`synthetic`, `natops`, `av_digits`, `mosi`, `mixture`, ...; options in `dataset_options`), a
local file (`.parquet`, `.json`/`.jsonl`, `.csv`, `.arrow`), a folder written by `save_to_disk` (or a data folder that
`datasets.load_dataset` understands), a `datasets` builder name with `data_files` in `dataset_options` (e.g.
`--dataset_name parquet --dataset_options '{"data_files": {"train": "a.parquet", "test": "b.parquet"}}'`), or a Hub
dataset name (online only). For anything but a built-in loader the modalities come from `--modalities` (a JSON spec or
a path to one) or from the model preset's `modalities`.

Splits: `train`; the validation split is `validation` (or `valid`, `dev`, `val`); if there is none, a seeded,
label-stratified `validation_split_percentage` of the training rows is carved out (seed `validation_split_seed`, fixed
independently of the training seed so that every seed of a study sees the same split), or none at all when the
percentage is 0 (fixed-budget recipes). The test split (`test`) is evaluated once, at the end; it never selects anything.
"""

import logging
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .arguments import DataArguments, ModelArguments
from .data import BUILTIN_DATASETS, BuiltinDataset, load_builtin_dataset
from .json_options import parse_json_option
from .recipes import load_model_preset

logger = logging.getLogger(__name__)

VALIDATION_SPLIT_NAMES = ("validation", "valid", "dev", "val")
TEST_SPLIT_NAMES = ("test",)


def dataset_slug(dataset_name: str) -> str:
    if dataset_name in BUILTIN_DATASETS:
        return dataset_name
    path = Path(dataset_name)
    if path.exists():
        return path.stem if path.is_file() else path.name
    return dataset_name.replace("/", "--")


def default_output_dir(dataset_name: str) -> str:
    """`outputs/<dataset>-default` (e.g. `outputs/synthetic-default`), relative to the current folder."""
    return os.path.join("outputs", f"{dataset_slug(dataset_name)}-default")



def _load_raw_dataset(data_args: DataArguments, options: dict[str, Any]) -> datasets.DatasetDict:
    name = data_args.dataset_name
    path = Path(name)
    extensions = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(str(path), **options)
    elif path.is_file():
        if path.suffix not in extensions:
            raise ValueError(f"Unsupported data file {name}: use one of {sorted(extensions)} or a save_to_disk folder.")
        data_files = options.pop("data_files", {"train": str(path)})
        dataset = datasets.load_dataset(extensions[path.suffix], data_files=data_files, **options)
    else:
        try:
            dataset = datasets.load_dataset(name, data_args.dataset_config_name, **options)
        except Exception as error:  # a clearer message for the common offline case
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
            hint = " HF_HUB_OFFLINE is set: a Hub dataset cannot be downloaded." if offline else ""
            raise ValueError(
                f"Could not load dataset {name!r}: not a built-in loader ({', '.join(BUILTIN_DATASETS)}), not a local "
                f"file or folder, and loading it as a Hub dataset failed: {error}.{hint}"
            ) from error
    if isinstance(dataset, datasets.Dataset):
        dataset = datasets.DatasetDict({data_args.train_split: dataset})
    return dataset


def load_data(data_args: DataArguments, model_args: ModelArguments | None = None) -> BuiltinDataset:
    """The dataset as a [`BuiltinDataset`] (built-in loader, local file/folder, or Hub), labels in a `labels` column."""
    options = parse_json_option(data_args.dataset_options, "--dataset_options") or {}
    if data_args.dataset_name in BUILTIN_DATASETS:
        data = load_builtin_dataset(data_args.dataset_name, **options)
        if data_args.problem_type:
            data.problem_type = data_args.problem_type
        return data

    dataset = _load_raw_dataset(data_args, dict(options))
    modalities = parse_json_option(data_args.modalities, "--modalities")
    if modalities is None and model_args is not None:
        modalities = load_model_preset(model_args.model_config).get("modalities")
    if not modalities:
        raise ValueError(
            f"Dataset {data_args.dataset_name!r} is not a built-in loader: give its modalities with --modalities "
            "(JSON such as '{\"audio\": {\"input_dim\": 8, \"sampling_rate\": 100}}' or a path to a JSON file), or use a "
            "model preset that lists them."
        )
    if data_args.label_column != "labels":
        dataset = dataset.rename_column(data_args.label_column, "labels")
    train = dataset[data_args.train_split]
    if "labels" not in train.column_names:
        raise ValueError(f"Label column {data_args.label_column!r} not found; columns: {train.column_names}.")
    label_feature = train.features["labels"]
    label_names = None
    if data_args.problem_type:
        problem_type = data_args.problem_type
    elif isinstance(label_feature, datasets.ClassLabel):
        problem_type = "single_label_classification"
    elif isinstance(label_feature, datasets.Value) and label_feature.dtype.startswith(("int", "uint", "bool")):
        problem_type = "single_label_classification"
    elif isinstance(label_feature, datasets.Value) and label_feature.dtype.startswith("float"):
        problem_type = "regression"
    else:
        raise ValueError(f"Cannot infer the problem type from the label feature {label_feature}: pass --problem_type.")
    if problem_type == "single_label_classification":
        if isinstance(label_feature, datasets.ClassLabel):
            label_names = list(label_feature.names)
        else:
            largest = max(int(np.max(split["labels"])) for split in dataset.values() if len(split))
            label_names = [str(index) for index in range(largest + 1)]
    extra = [c for c in train.column_names if c not in modalities and c not in ("timestamps", "labels")]
    if extra:
        logger.info("Dropping columns that are neither modalities, timestamps nor labels: %s", extra)
        dataset = dataset.remove_columns(extra)
    return BuiltinDataset(
        dataset=dataset,
        modalities=modalities,
        problem_type=problem_type,
        label_names=label_names,
        description=f"Dataset `{data_args.dataset_name}`, splits: "
        + ", ".join(f"{name} {len(split)}" for name, split in dataset.items())
        + ".",
        source=data_args.dataset_name,
        options=options,
    )


def prepare_splits(data: BuiltinDataset, data_args: DataArguments) -> tuple[dict[str, datasets.Dataset], str]:
    """`{"train", "validation"?, "test"?}` raw splits, and a sentence on where the validation split came from."""
    dataset = data.dataset
    if data_args.train_split not in dataset:
        raise ValueError(f"No training split {data_args.train_split!r}; the dataset has {list(dataset)}.")
    train = dataset[data_args.train_split]
    validation_name = data_args.validation_split or next((n for n in VALIDATION_SPLIT_NAMES if n in dataset), None)
    if data_args.validation_split and data_args.validation_split not in dataset:
        raise ValueError(f"No validation split {data_args.validation_split!r}; the dataset has {list(dataset)}.")
    fraction = data_args.validation_split_percentage
    if validation_name is not None:
        validation = dataset[validation_name]
        provenance = f"the dataset's `{validation_name}` split"
    elif fraction == 0:
        validation, provenance = None, "none (validation_split_percentage 0: a fixed budget, every training row trains)"
    else:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"There is no validation split and validation_split_percentage={fraction} is not in [0, 1).")
        size = max(1, int(round(fraction * len(train))))
        stratify = "labels" if isinstance(train.features.get("labels"), datasets.ClassLabel) else None
        try:
            parts = train.train_test_split(test_size=size, seed=data_args.validation_split_seed, stratify_by_column=stratify)
        except ValueError:  # too few rows of some class to stratify
            parts = train.train_test_split(test_size=size, seed=data_args.validation_split_seed)
            stratify = None
        train, validation = parts["train"], parts["test"]
        provenance = (
            f"{size} rows ({fraction:.0%}) carved from `{data_args.train_split}` with seed "
            f"{data_args.validation_split_seed}" + (", stratified by label" if stratify else "")
        )
    test_name = data_args.test_split or next((n for n in TEST_SPLIT_NAMES if n in dataset), None)
    if data_args.test_split and data_args.test_split not in dataset:
        raise ValueError(f"No test split {data_args.test_split!r}; the dataset has {list(dataset)}.")
    splits = {"train": train} if validation is None else {"train": train, "validation": validation}
    if test_name is not None:
        splits["test"] = dataset[test_name]
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples),
                         ("test", data_args.max_test_samples)):
        if limit is not None and split in splits and len(splits[split]) > limit:
            splits[split] = splits[split].select(range(limit))
    return splits, provenance



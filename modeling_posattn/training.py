"""Training with the stock `Trainer`: the reusable pieces behind `scripts/train.py`.

`scripts/train.py` is a thin command line over [`parse_args`] and [`run_training`]; other scripts (ablations, tests) call
[`run_training`] directly with overrides and seeds and get the metrics back:

```python
from modeling_posattn.training import run_training

metrics = run_training(overrides={"absolute_position_encoding": "none", "num_train_epochs": 3,
                                  "output_dir": "outputs/ablation/none-seed1"}, seed=1)
metrics["test_accuracy"]
```

Arguments come in three groups, as in transformers' example scripts: [`ModelArguments`], [`DataArguments`] and
[`PosAttnTrainingArguments`] (`TrainingArguments` plus early stopping). A *recipe* is one flat JSON object holding keys
of any group (`configuration/synthetic.json`, `configuration/natops.json`...). Precedence, lowest first: the built-in
defaults ([`DEFAULT_RECIPE`], the synthetic recipe), the recipe file (`--config`), then command-line flags (or the
`overrides` dict of [`run_training`]).

Data: `dataset_name` is a built-in loader (`synthetic`, `natops`, `av_digits`, `mosi`; options in `dataset_options`), a
local file (`.parquet`, `.json`/`.jsonl`, `.csv`, `.arrow`), a folder written by `save_to_disk` (or a data folder that
`datasets.load_dataset` understands), or a Hub dataset name (online only). For anything but a built-in loader the
modalities come from `--modalities` (a JSON spec or a path to one) or from the model preset's `modalities`.

Splits: `train`; the validation split is `validation` (or `valid`, `dev`, `val`); if there is none, a seeded,
label-stratified `validation_split_percentage` of the training rows is carved out (seed `validation_split_seed`, fixed
independently of the training seed so that every seed of an ablation sees the same split). The processor's
normalisation is fitted on what remains of the training split only. The test split (`test`) is evaluated once, at
the end, with the best checkpoint (`load_best_model_at_end`); it never selects anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import datasets
import transformers
from transformers import EarlyStoppingCallback, HfArgumentParser, Trainer, TrainingArguments, set_seed

from .configuration_posattn import (
    ABSOLUTE_POSITION_ENCODING_NAMES,
    POOLING_NAMES,
    POSITION_FUSION_NAMES,
    RELATIVE_POSITION_ENCODING_NAMES,
    PosAttnConfig,
)
from .data import BUILTIN_DATASETS, BuiltinDataset, load_builtin_dataset
from .metrics import load_metric
from .modeling_posattn import PosAttnForSequenceClassification
from .processing_posattn import PosAttnDataCollator, PosAttnProcessor

logger = logging.getLogger("modeling_posattn.training")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION_DIR = PROJECT_ROOT / "configuration"

# Model size presets. `configuration/<name>.json` holds the same values (a test keeps them in step); these copies let
# the package train without the repository's `configuration/` folder.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "posattn-small": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "hidden_dropout_prob": 0.1,
        "attention_dropout": 0.0,
    },
    "posattn-base": {
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 512,
        "hidden_dropout_prob": 0.1,
        "attention_dropout": 0.0,
    },
}

# The embedded default: the synthetic recipe, `configuration/synthetic.json` (a test keeps them equal). What
# `python scripts/train.py` runs with no arguments.
DEFAULT_RECIPE: dict[str, Any] = {
    # model
    "model_config": "posattn-small",
    "absolute_position_encoding": "multiscale",
    "relative_position_encoding": "time_rope",
    "initializer_range": 0.1,
    # data
    "dataset_name": "synthetic",
    "dataset_options": {},
    # training
    "output_dir": None,  # -> outputs/<dataset>-default
    "num_train_epochs": 8,
    "learning_rate": 2e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "weight_decay": 0.01,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "metric_for_best_model": "auto",
    "logging_strategy": "steps",
    "logging_steps": 10,
    "report_to": ["tensorboard"],
    "seed": 42,
    "dataloader_num_workers": 0,
    "torch_num_threads": 1,
}

# Keys a recipe file may carry for documentation only.
RECIPE_COMMENT_KEYS = ("description", "comment")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "dev", "val")
TEST_SPLIT_NAMES = ("test",)
# Main metric per problem type: (metric module, key, greater is better).
MAIN_METRICS = {
    "single_label_classification": ("posattn_classification", "accuracy", True),
    "regression": ("posattn_sentiment", "mae", False),
}
LOWER_IS_BETTER = ("loss", "mae")


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """What model to train: a size preset plus overrides of any `PosAttnConfig` field."""

    model_config: str = field(
        default="posattn-small",
        metadata={
            "help": "Model preset: a name in configuration/ (posattn-small, posattn-base), a path to a JSON of "
            "PosAttnConfig fields, or a checkpoint folder (its config.json). Modalities and labels come from the data."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from this trained PosAttn checkpoint instead of a fresh initialisation."}
    )
    absolute_position_encoding: str | None = field(
        default=None, metadata={"help": "Absolute encoding.", "choices": ABSOLUTE_POSITION_ENCODING_NAMES}
    )
    relative_position_encoding: str | None = field(
        default=None, metadata={"help": "Relative encoding.", "choices": RELATIVE_POSITION_ENCODING_NAMES}
    )
    position_fusion: str | None = field(
        default=None, metadata={"help": "Fusion of the absolute encoding.", "choices": POSITION_FUSION_NAMES}
    )
    pooling: str | None = field(default=None, metadata={"help": "Pooling.", "choices": POOLING_NAMES})
    hidden_size: int | None = field(default=None, metadata={"help": "Hidden size."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Encoder layers."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Attention heads."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Feed-forward size."})
    hidden_dropout_prob: float | None = field(default=None, metadata={"help": "Dropout on hidden states."})
    attention_dropout: float | None = field(default=None, metadata={"help": "Dropout on attention weights."})
    classifier_dropout: float | None = field(default=None, metadata={"help": "Dropout before the classifier."})
    initializer_range: float | None = field(default=None, metadata={"help": "Std of the weight initialisation."})
    max_position_embeddings: int | None = field(default=None, metadata={"help": "`learned` table size / RoPE length."})
    time_units_per_second: float | None = field(default=None, metadata={"help": "Time-based encodings' units per second."})
    config_overrides: str | None = field(
        default=None, metadata={"help": 'JSON object of further PosAttnConfig fields, e.g. \'{"rope_parameters": {...}}\'.'}
    )
    attn_implementation: str | None = field(
        default="sdpa", metadata={"help": "Attention kernel.", "choices": ("sdpa", "eager", "flex_attention")}
    )


# PosAttnConfig fields that ModelArguments exposes as flags.
MODEL_FIELD_OVERRIDES = (
    "absolute_position_encoding",
    "relative_position_encoding",
    "position_fusion",
    "pooling",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_dropout_prob",
    "attention_dropout",
    "classifier_dropout",
    "initializer_range",
    "max_position_embeddings",
    "time_units_per_second",
)


@dataclass
class DataArguments:
    """What data to train and evaluate on."""

    dataset_name: str = field(
        default="synthetic",
        metadata={
            "help": f"A built-in loader ({', '.join(BUILTIN_DATASETS)}), a local .parquet/.json/.jsonl/.csv/.arrow "
            "file, a save_to_disk folder, or a Hub dataset name (online only)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_options: str | None = field(
        default=None,
        metadata={"help": "JSON object of loader options (built-in loader kwargs, or datasets.load_dataset kwargs)."},
    )
    modalities: str | None = field(
        default=None,
        metadata={"help": "Modality spec (JSON or a path to a JSON file) for datasets other than the built-in ones."},
    )
    label_column: str = field(default="labels", metadata={"help": "Label column (renamed to `labels`)."})
    problem_type: str | None = field(
        default=None,
        metadata={"help": "Override the inferred problem type.", "choices": ("single_label_classification", "regression")},
    )
    train_split: str = field(default="train", metadata={"help": "Training split name."})
    validation_split: str | None = field(
        default=None, metadata={"help": "Validation split name (default: validation/valid/dev/val if present)."}
    )
    test_split: str | None = field(default=None, metadata={"help": "Test split name (default: test if present)."})
    validation_split_percentage: float = field(
        default=0.1, metadata={"help": "Fraction of train carved out as validation when there is no validation split."}
    )
    validation_split_seed: int = field(default=0, metadata={"help": "Seed of that carve (independent of --seed)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Keep the first N test rows."})
    max_tokens: int | None = field(default=None, metadata={"help": "Processor: truncate each modality to N tokens."})
    max_seconds: float | None = field(default=None, metadata={"help": "Processor: truncate tokens at or after T s."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for dataset.map."})
    metric_name: str | None = field(
        default=None,
        metadata={
            "help": "Local evaluate module (default: posattn_classification for classification, posattn_sentiment "
            "for regression).",
            "choices": ("posattn_classification", "posattn_sentiment"),
        },
    )


@dataclass
class PosAttnTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus optional early stopping (an `EarlyStoppingCallback` on `metric_for_best_model`)."""

    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement (off when unset)."}
    )
    early_stopping_threshold: float = field(default=0.0, metadata={"help": "Minimum improvement that counts."})
    torch_num_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads for torch's intra-op parallelism (torch.set_num_threads) in each process; unset or 0: "
            "torch's default (OMP_NUM_THREADS, else one per core). The small presets gain little from threads and "
            "lose a lot when the cores are shared, hence 1 in the synthetic recipe."
        },
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, PosAttnTrainingArguments)


def _parse_json(value, what: str):
    """A JSON option given as a dict already (from a recipe), as a JSON string, or as a path to a JSON file."""
    if value is None or isinstance(value, (dict, list)):
        return value
    text = str(value).strip()
    if not text:
        return None
    if not text.startswith(("{", "[")) and os.path.isfile(text):
        with open(text) as handle:
            return json.load(handle)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what}: expected a JSON object or a path to a JSON file, got {value!r} ({error}).") from None


def _resolve_recipe_path(path: str) -> Path:
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    for alternative in (CONFIGURATION_DIR / path, CONFIGURATION_DIR / f"{path}.json"):
        if alternative.is_file():
            return alternative
    raise FileNotFoundError(f"Recipe {path!r} not found (looked in the current folder and {CONFIGURATION_DIR}).")


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe: one flat JSON object of keys from any argument group (comment keys are dropped)."""
    with open(_resolve_recipe_path(str(path))) as handle:
        recipe = json.load(handle)
    if not isinstance(recipe, dict):
        raise ValueError(f"Recipe {path}: expected a JSON object, got {type(recipe).__name__}.")
    return {key: value for key, value in recipe.items() if key not in RECIPE_COMMENT_KEYS and not key.startswith("_")}


def _has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _known_keys() -> set[str]:
    return {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def _explicit_cli_keys(argv: list[str]) -> set[str]:
    keys = set()
    for token in argv:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0].replace("-", "_")
            keys.add(key[3:] if key.startswith("no_") and key[3:] in _known_keys() else key)
    return keys


def parse_args(
    argv: list[str] | None = None, overrides: dict[str, Any] | None = None
) -> tuple[ModelArguments, DataArguments, PosAttnTrainingArguments]:
    """Parse the three argument groups: built-in defaults < `--config` recipe < `overrides` < `argv` flags.

    `argv` defaults to `sys.argv[1:]`. `--config PATH` (or a name in `configuration/`) loads a recipe; `overrides` is a
    flat dict of any group's keys (for programmatic callers).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = dict(DEFAULT_RECIPE)
    recipe_paths = []
    while "--config" in argv or any(token.startswith("--config=") for token in argv):
        for index, token in enumerate(argv):
            if token == "--config":
                recipe_paths.append(argv[index + 1])
                del argv[index : index + 2]
                break
            if token.startswith("--config="):
                recipe_paths.append(token.split("=", 1)[1])
                del argv[index]
                break
    explicit = set()
    for path in recipe_paths:
        loaded = load_recipe(path)
        recipe.update(loaded)
        explicit |= set(loaded)
    overrides = dict(overrides or {})
    recipe.update(overrides)
    unknown = sorted(set(recipe) - _known_keys())
    if unknown:
        raise ValueError(f"Unknown recipe/override key(s) {unknown}: not a field of {[c.__name__ for c in ARGUMENT_CLASSES]}.")
    cli_keys = _explicit_cli_keys(argv)
    explicit |= cli_keys | set(overrides)
    if not _has_accelerator():
        if "dataloader_pin_memory" not in explicit:
            recipe["dataloader_pin_memory"] = False  # pinning needs an accelerator; avoids a warning per data loader
        if "use_cpu" not in explicit:
            # Without `use_cpu`, TrainingArguments does not set up torch.distributed on a machine without a GPU: under
            # `torchrun --nproc_per_node 2` each process would train alone (world size 1). With it: gloo DDP.
            recipe["use_cpu"] = True
    if "tensorboard" in (recipe.get("report_to") or []) and importlib.util.find_spec("tensorboard") is None:
        if "report_to" not in explicit:
            recipe["report_to"] = [name for name in recipe["report_to"] if name != "tensorboard"] or "none"

    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.add_argument(  # read above; declared here for --help only
        "--config", default=argparse.SUPPRESS,
        help="A recipe: a JSON object with keys of any argument group (e.g. configuration/natops.json). Flags given on "
        "the command line override it. Without it: the synthetic recipe (configuration/synthetic.json).",
    )
    parser.set_defaults(**recipe)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    if "output_dir" not in cli_keys and recipe.get("output_dir") is None:
        training_args.output_dir = default_output_dir(data_args.dataset_name)
    training_args._posattn_explicit_keys = sorted(explicit)
    return model_args, data_args, training_args


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


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def load_model_preset(model_config: str | None) -> dict[str, Any]:
    """PosAttnConfig fields of a preset: a built-in name, a JSON file, or a checkpoint folder's config.json."""
    if not model_config:
        return {}
    path = Path(model_config)
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    elif not path.is_file():
        named = CONFIGURATION_DIR / f"{model_config}.json"
        if named.is_file():
            path = named
        elif model_config in MODEL_PRESETS:
            return dict(MODEL_PRESETS[model_config])
        else:
            raise FileNotFoundError(
                f"Model preset {model_config!r} is neither a file, a checkpoint folder, nor one of {sorted(MODEL_PRESETS)}."
            )
    with open(path) as handle:
        preset = json.load(handle)
    # A checkpoint's config.json carries bookkeeping that must not leak into a fresh config.
    for key in ("architectures", "auto_map", "transformers_version", "model_type", "id2label", "label2id", "num_labels",
                "problem_type", "dtype", "torch_dtype", "_attn_implementation_autoset"):
        preset.pop(key, None)
    return preset


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
    options = _parse_json(data_args.dataset_options, "--dataset_options") or {}
    if data_args.dataset_name in BUILTIN_DATASETS:
        data = load_builtin_dataset(data_args.dataset_name, **options)
        if data_args.problem_type:
            data.problem_type = data_args.problem_type
        return data

    dataset = _load_raw_dataset(data_args, dict(options))
    modalities = _parse_json(data_args.modalities, "--modalities")
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
    """`{"train", "validation", "test"?}` raw splits, and a sentence on where the validation split came from."""
    dataset = data.dataset
    if data_args.train_split not in dataset:
        raise ValueError(f"No training split {data_args.train_split!r}; the dataset has {list(dataset)}.")
    train = dataset[data_args.train_split]
    validation_name = data_args.validation_split or next((n for n in VALIDATION_SPLIT_NAMES if n in dataset), None)
    if data_args.validation_split and data_args.validation_split not in dataset:
        raise ValueError(f"No validation split {data_args.validation_split!r}; the dataset has {list(dataset)}.")
    if validation_name is not None:
        validation = dataset[validation_name]
        provenance = f"the dataset's `{validation_name}` split"
    else:
        fraction = data_args.validation_split_percentage
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"There is no validation split and validation_split_percentage={fraction} is not in (0, 1).")
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
    splits = {"train": train, "validation": validation}
    if test_name is not None:
        splits["test"] = dataset[test_name]
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples),
                         ("test", data_args.max_test_samples)):
        if limit is not None and split in splits and len(splits[split]) > limit:
            splits[split] = splits[split].select(range(limit))
    return splits, provenance


def build_processor(data: BuiltinDataset, data_args: DataArguments | None = None, train: datasets.Dataset | None = None) -> PosAttnProcessor:
    """A `PosAttnProcessor` for the data's modalities, its normalisation fitted on `train` when given."""
    processor = PosAttnProcessor(
        modalities=data.modalities,
        max_tokens=data_args.max_tokens if data_args else None,
        max_seconds=data_args.max_seconds if data_args else None,
    )
    if train is not None:
        processor.fit(train)
    return processor


def encode_splits(
    splits: dict[str, datasets.Dataset], processor: PosAttnProcessor, training_args: TrainingArguments | None = None,
    num_proc: int | None = None,
) -> dict[str, datasets.Dataset]:
    """Map every split through the processor (`padding=False`): packed rows for [`PosAttnDataCollator`]."""
    encoded = {}
    for name, split in splits.items():
        raw_columns = [column for column in split.column_names if column != "labels"]
        unknown = [c for c in raw_columns if c not in processor.modalities and c != "timestamps"]
        if unknown:
            split = split.remove_columns(unknown)
            raw_columns = [c for c in raw_columns if c not in unknown]

        def encode(split=split, raw_columns=raw_columns, name=name):
            return split.map(
                processor, batched=True, fn_kwargs={"padding": False}, remove_columns=raw_columns, num_proc=num_proc,
                desc=f"Encoding {name}",
            )

        if training_args is not None:
            with training_args.main_process_first(desc=f"encoding {name}"):
                encoded[name] = encode()
        else:
            encoded[name] = encode()
    return encoded


# ---------------------------------------------------------------------------------------------------------------------
# Model and metrics
# ---------------------------------------------------------------------------------------------------------------------


def build_config(data: BuiltinDataset, model_args: ModelArguments) -> PosAttnConfig:
    """PosAttnConfig from the preset, the flag overrides, the data's modalities and labels."""
    fields = load_model_preset(model_args.model_config)
    fields.pop("modalities", None)
    fields.pop("modality_names", None)
    fields.update(_parse_json(model_args.config_overrides, "--config_overrides") or {})
    fields.update({key: getattr(model_args, key) for key in MODEL_FIELD_OVERRIDES if getattr(model_args, key) is not None})
    labels = {}
    if data.problem_type == "single_label_classification":
        names = data.label_names or [str(i) for i in range(data.num_labels)]
        labels = {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}
    return PosAttnConfig(
        modalities=data.modalities,
        num_labels=data.num_labels,
        problem_type=data.problem_type,
        **labels,
        **fields,
    )


def build_model(data: BuiltinDataset, model_args: ModelArguments) -> PosAttnForSequenceClassification:
    """A fresh `PosAttnForSequenceClassification` (or one loaded from `model_name_or_path`) for the data."""
    config = build_config(data, model_args)
    if model_args.model_name_or_path:
        return PosAttnForSequenceClassification.from_pretrained(
            model_args.model_name_or_path, config=config, attn_implementation=model_args.attn_implementation,
            ignore_mismatched_sizes=True,
        )
    return PosAttnForSequenceClassification._from_config(config, attn_implementation=model_args.attn_implementation)


def main_metric(problem_type: str) -> tuple[str, str, bool]:
    """(metric module, main key, greater is better) for a problem type."""
    if problem_type not in MAIN_METRICS:
        raise ValueError(f"scripts/train.py handles {sorted(MAIN_METRICS)}, not {problem_type!r}.")
    return MAIN_METRICS[problem_type]


def build_compute_metrics(problem_type: str, metric_name: str | None = None):
    """`compute_metrics` for `Trainer`: logits (the first element when predictions are a tuple, as with
    `output_hidden_states`) -> class ids (argmax) or scores (flattened) -> the local evaluate module's numbers."""
    metric_name = metric_name or main_metric(problem_type)[0]
    metric = load_metric(metric_name, keep_in_memory=True)

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        references = np.asarray(eval_prediction.label_ids)
        if problem_type == "regression":
            predictions, references = predictions.reshape(-1), references.reshape(-1)
        else:
            predictions, references = predictions.argmax(-1), references.reshape(-1)
        return {key: float(value) for key, value in metric.compute(predictions=predictions, references=references).items()}

    return compute_metrics


# ---------------------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------------------


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    if training_args.should_log and level < logging.WARNING:
        transformers.utils.logging.set_verbosity_info()
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity(max(level, logging.WARNING))
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def _resolve_best_metric(training_args: TrainingArguments, problem_type: str) -> None:
    _, key, greater = main_metric(problem_type)
    explicit = set(getattr(training_args, "_posattn_explicit_keys", ()))
    if training_args.metric_for_best_model in (None, "auto"):
        training_args.metric_for_best_model = key
        if "greater_is_better" not in explicit:
            training_args.greater_is_better = greater
    elif "greater_is_better" not in explicit:
        name = training_args.metric_for_best_model.removeprefix("eval_")
        training_args.greater_is_better = not any(name.endswith(low) for low in LOWER_IS_BETTER)


def format_results_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per split, one column per metric (Trainer bookkeeping left out)."""
    skip = ("runtime", "samples_per_second", "steps_per_second", "epoch")
    columns: list[str] = []
    for metrics in results.values():
        for key in metrics:
            name = key.split("_", 1)[1] if "_" in key else key
            if name not in skip and name not in columns:
                columns.append(name)
    lines = ["| split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for split, metrics in results.items():
        prefix = next(iter(metrics)).split("_", 1)[0] if metrics else ""
        cells = []
        for column in columns:
            value = metrics.get(f"{prefix}_{column}")
            cells.append("" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recipe_summary(model_args, data_args, training_args, provenance: str) -> dict[str, Any]:
    recipe = {
        "dataset": data_args.dataset_name,
        "dataset_options": _parse_json(data_args.dataset_options, "--dataset_options") or {},
        "validation_split": provenance,
        "model_preset": model_args.model_config,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "optimizer": getattr(training_args.optim, "value", training_args.optim),
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "train_batch_size_per_device": training_args.per_device_train_batch_size,
        "world_size": training_args.world_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "seed": training_args.seed,
        "metric_for_best_model": training_args.metric_for_best_model,
        "early_stopping_patience": training_args.early_stopping_patience,
    }
    for key in ("max_train_samples", "max_eval_samples", "max_test_samples", "max_tokens", "max_seconds"):
        if getattr(data_args, key) is not None:
            recipe[key] = getattr(data_args, key)
    return recipe


def _remove_stale_results(output_dir: str) -> None:
    # `Trainer.save_metrics` merges into an existing all_results.json: start from a clean slate.
    for name in ("all_results.json", "train_results.json", "eval_results.json", "test_results.json"):
        path = os.path.join(output_dir, name)
        if os.path.isfile(path):
            os.remove(path)


def run_training(
    model_args: ModelArguments | None = None,
    data_args: DataArguments | None = None,
    training_args: PosAttnTrainingArguments | None = None,
    *,
    argv: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int | None = None,
    write_model_card: bool = True,
) -> dict[str, float]:
    """Train, evaluate and save; return all metrics (`train_*`, `eval_*` on validation, `test_*` if a test split).

    Either pass the three argument objects, or let them be parsed from `argv` (default: no flags, i.e. the synthetic
    recipe) and `overrides` (a flat dict of any argument's name -> value; see [`parse_args`]). `seed` overrides the
    training seed (initialisation, dropout, data order; `data_seed` too unless set).
    Writes into `output_dir`: the model (`config.json`, `model.safetensors`), the processor
    (`preprocessor_config.json`), `train_results.json`, `eval_results.json`, `test_results.json`, `all_results.json`,
    `trainer_state.json`, the model card `README.md` (when `modeling_posattn.model_card` is available) and TensorBoard
    logs under `runs/`.
    """
    given = [model_args is not None, data_args is not None, training_args is not None]
    if any(given) and (not all(given) or argv is not None or overrides):
        raise ValueError("Pass either all three argument objects, or `argv` / `overrides` to parse them, not a mix.")
    if not any(given):
        model_args, data_args, training_args = parse_args(argv if argv is not None else [], overrides)
    if seed is not None:
        training_args.seed = seed
    setup_logging(training_args)
    started = time.perf_counter()
    if training_args.torch_num_threads:
        torch.set_num_threads(training_args.torch_num_threads)
    logger.info("Training arguments: output_dir=%s seed=%s world_size=%s device=%s torch threads=%d",
                training_args.output_dir, training_args.seed, training_args.world_size, training_args.device,
                torch.get_num_threads())

    data = load_data(data_args, model_args)
    if data.problem_type not in MAIN_METRICS:
        raise ValueError(f"scripts/train.py handles {sorted(MAIN_METRICS)}, not {data.problem_type!r}.")
    splits, provenance = prepare_splits(data, data_args)
    logger.info("Dataset %s: %s; validation: %s", data_args.dataset_name,
                ", ".join(f"{name} {len(split)}" for name, split in splits.items()), provenance)
    if "test" not in splits:
        logger.warning("No test split: only the validation split is evaluated.")
    processor = build_processor(data, data_args, splits["train"])
    encoded = encode_splits(splits, processor, training_args, num_proc=data_args.preprocessing_num_workers)

    _resolve_best_metric(training_args, data.problem_type)
    set_seed(training_args.seed)
    model = build_model(data, model_args)
    logger.info("Model: %s parameters, absolute=%s relative=%s fusion=%s", f"{model.num_parameters():,}",
                model.config.absolute_position_encoding, model.config.relative_position_encoding,
                model.config.position_fusion)

    callbacks = []
    if training_args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience, training_args.early_stopping_threshold))
    if training_args.should_save:
        _remove_stale_results(training_args.output_dir)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=processor,
        data_collator=PosAttnDataCollator(processor),
        compute_metrics=build_compute_metrics(data.problem_type, data_args.metric_name),
        callbacks=callbacks,
    )
    logger.info("Accelerator: %s over %d process(es), FSDP %s", trainer.accelerator.distributed_type,
                trainer.accelerator.num_processes, "on" if trainer.is_fsdp_enabled else "off")
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # model + processor (processing_class) into output_dir
    train_metrics = dict(train_result.metrics)
    train_metrics["train_samples"] = len(encoded["train"])
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    results: dict[str, dict[str, float]] = {}
    eval_metrics = trainer.evaluate(metric_key_prefix="eval")
    eval_metrics["eval_samples"] = len(encoded["validation"])
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    results["validation"] = eval_metrics
    test_metrics: dict[str, float] = {}
    if "test" in encoded:
        test_metrics = trainer.evaluate(encoded["test"], metric_key_prefix="test")
        test_metrics["test_samples"] = len(encoded["test"])
        trainer.log_metrics("test", test_metrics)
        trainer.save_metrics("test", test_metrics)
        results["test"] = test_metrics

    if trainer.is_world_process_zero():
        recipe = _recipe_summary(model_args, data_args, training_args, provenance)
        if write_model_card:
            _write_card(trainer, data, data_args, train_metrics, test_metrics or eval_metrics,
                        "test" if test_metrics else "validation", recipe)
        wall = time.perf_counter() - started
        print(f"\nResults on {data_args.dataset_name} (best checkpoint by {training_args.metric_for_best_model}; "
              f"validation: {provenance}; {wall:.1f} s end to end) -> {training_args.output_dir}")
        print(format_results_table(results))
    return {**train_metrics, **eval_metrics, **test_metrics}


def _write_card(trainer, data, data_args, train_metrics, eval_results, eval_split, recipe) -> None:
    try:
        from .model_card import study_summaries, write_model_card
    except ImportError as error:
        if error.name not in ("modeling_posattn.model_card", f"{__package__}.model_card"):
            raise
        logger.warning("modeling_posattn.model_card is not available: no model card (README.md) written.")
        return
    clean = {
        key: value for key, value in eval_results.items()
        if isinstance(value, (int, float)) and math.isfinite(value) and not key.endswith("_samples")
    }
    path = write_model_card(
        trainer.args.output_dir,
        config=trainer.model.config,
        dataset_name=data_args.dataset_name if data_args.dataset_name in BUILTIN_DATASETS else dataset_slug(data_args.dataset_name),
        dataset_description=data.description,
        training_summary=train_metrics,
        eval_results=clean,
        recipe=recipe,
        eval_split=eval_split,
        studies=study_summaries(data_args.dataset_name) if data_args.dataset_name in BUILTIN_DATASETS else None,
    )
    logger.info("Model card written to %s", path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Entry point of `scripts/train.py`."""
    model_args, data_args, training_args = parse_args(argv)
    return run_training(model_args, data_args, training_args)


__all__ = [
    "DEFAULT_RECIPE",
    "MODEL_PRESETS",
    "ModelArguments",
    "DataArguments",
    "PosAttnTrainingArguments",
    "parse_args",
    "load_recipe",
    "load_data",
    "prepare_splits",
    "build_processor",
    "encode_splits",
    "build_config",
    "build_model",
    "build_compute_metrics",
    "format_results_table",
    "run_training",
    "main",
]

"""From data and arguments to the objects Trainer needs: the processor (normalisation fitted on train), the encoded
splits, the config and the model."""

import numpy as np

import datasets
from transformers import TrainingArguments

from ..configuration_posattn import PosAttnConfig
from ..modeling_posattn import PosAttnForSequenceClassification
from ..processing_posattn import PosAttnProcessor
from .arguments import DataArguments, ModelArguments, config_field_overrides
from .augmentation import TimeSeriesAugmentation
from .data import BuiltinDataset
from .json_options import parse_json_option
from .recipes import load_model_preset


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


def apply_stem(data: BuiltinDataset, data_args: DataArguments) -> None:
    """Write `--stem` into every feature modality's spec (in place), where both the processor and the config read it."""
    stem = parse_json_option(data_args.stem, "--stem")
    if stem is not None:
        data.modalities = {
            name: {**spec, "stem": stem} if spec.get("input_dim") is not None else spec for name, spec in data.modalities.items()
        }


def build_augmentation(data_args: DataArguments, processor: PosAttnProcessor) -> TimeSeriesAugmentation | None:
    """`--augmentation` as a `TimeSeriesAugmentation` (jitter in units of the fitted channel std), or None."""
    options = parse_json_option(data_args.augmentation, "--augmentation")
    if not options:
        return None
    augmentation = TimeSeriesAugmentation(
        **options,
        channel_std={name: np.asarray(stats["std"]) for name, stats in processor.normalization.items()},
        sampling_rates={name: spec.get("sampling_rate") for name, spec in processor.modalities.items()},
    )
    return augmentation if augmentation.active else None


def augmented_split(split: datasets.Dataset, processor: PosAttnProcessor, augmentation: TimeSeriesAugmentation, seed: int) -> datasets.Dataset:
    """The raw train split, augmented and processed on the fly (`with_transform`): a new draw every time a row is read."""
    rng = np.random.default_rng(seed)
    keep = [c for c in split.column_names if c in processor.modalities or c in ("timestamps", "labels")]

    def transform(batch):
        size = len(batch["labels"])
        samples = []
        for i in range(size):
            sample = {key: batch[key][i] for key in batch}
            if isinstance(sample.get("timestamps"), dict):
                sample["timestamps"] = {k: v for k, v in sample["timestamps"].items() if v is not None}
            samples.append(augmentation(sample, rng))
        return dict(processor(samples, padding=False))

    return split.select_columns(keep).with_transform(transform)


def encode_splits(
    splits: dict[str, datasets.Dataset], processor: PosAttnProcessor, training_args: TrainingArguments | None = None,
    num_proc: int | None = None,
) -> dict[str, datasets.Dataset]:
    """Map every split through the processor (`padding=False`): packed rows for `DataCollatorWithPadding(processor)`."""
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


def build_config(data: BuiltinDataset, model_args: ModelArguments) -> PosAttnConfig:
    """PosAttnConfig from the preset, the flag overrides, the data's modalities and labels."""
    fields = load_model_preset(model_args.model_config)
    fields.pop("modalities", None)
    fields.pop("modality_names", None)
    fields.update(parse_json_option(model_args.config_overrides, "--config_overrides") or {})
    fields.update(config_field_overrides(model_args))
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


__all__ = ["build_processor", "encode_splits", "build_config", "build_model", "apply_stem", "build_augmentation", "augmented_split"]

"""From data and arguments to the objects Trainer needs: the processor (normalisation fitted on train), the encoded
splits, the config and the model."""

import logging

import numpy as np

import datasets
from transformers import TrainingArguments

from ..configuration_posattn import PosAttnConfig
from ..modeling_posattn import PosAttnForPreTraining, PosAttnForSequenceClassification
from ..processing_posattn import PosAttnProcessor
from .arguments import DataArguments, ModelArguments, config_field_overrides
from .augmentation import TimeSeriesAugmentation
from .data import BuiltinDataset
from .json_options import parse_json_option
from .recipes import load_model_preset

logger = logging.getLogger(__name__)


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
    """Map every split through the processor (`padding=False`): packed rows for `DataCollatorWithPadding(processor)`.

    The splits come back numpy-formatted in their stored dtypes (`with_format("numpy", dtype=None)`: float64
    timestamps stay float64), `input_values` stored as an `Array2D((None, feature_dim))`: a row's `input_values` is one
    `(tokens, features)` array, not nested Python lists that the collator would rebuild element by element (15-20% of a
    training step at 64-d features, issue 13). Each row
    also carries its packed `length` (transformers' default `length_column_name`), which
    `train_sampling_strategy="group_by_length"` reads when `remove_unused_columns=False`; with the default `True`
    Trainer drops it before building the sampler, which then measures `modality_ids`, the processor's first model
    input, present in every packed row.
    """
    encoded = {}
    for name, split in splits.items():
        raw_columns = [column for column in split.column_names if column != "labels"]
        unknown = [c for c in raw_columns if c not in processor.modalities and c != "timestamps"]
        if unknown:
            split = split.remove_columns(unknown)
            raw_columns = [c for c in raw_columns if c not in unknown]

        def encode(split=split, raw_columns=raw_columns, name=name):
            rows = split.map(
                encode_batch, batched=True, fn_kwargs={"processor": processor}, remove_columns=raw_columns,
                num_proc=num_proc, desc=f"Encoding {name}",
            )
            if "input_values" in rows.column_names:
                # Stored as a (tokens, features) array column: Arrow hands it to numpy in one piece, where nested
                # lists are converted row by row (about 10x slower to fetch, measured in docs/speed_notes.md).
                rows = rows.cast_column("input_values", datasets.Array2D((None, processor.feature_dim), "float32"))
            return rows.with_format("numpy", dtype=None)

        if training_args is not None:
            with training_args.main_process_first(desc=f"encoding {name}"):
                encoded[name] = encode()
        else:
            encoded[name] = encode()
    return encoded


def encode_batch(batch: dict[str, list], processor: PosAttnProcessor) -> dict[str, list]:
    """Packed, unpadded rows of a batch of raw samples, with each row's packed length (`length`)."""
    rows = dict(processor(batch, padding=False))
    rows["length"] = [len(modality_ids) for modality_ids in rows["modality_ids"]]
    return rows


def config_fields(model_args: ModelArguments) -> dict:
    """The PosAttnConfig fields of the preset and the flag overrides, without the modalities (they come from the data).

    Starting from a checkpoint (`model_name_or_path`), its own `config.json` is the preset: the architecture is the
    checkpoint's (`model_config` is not read), so that its weights fit; flags still override single fields.
    """
    preset = model_args.model_name_or_path or model_args.model_config
    if model_args.model_name_or_path and model_args.model_config:
        logger.info("Starting from %s: its config.json is the preset (model_config %r is not read).",
                    model_args.model_name_or_path, model_args.model_config)
    fields = load_model_preset(preset)
    fields.pop("modalities", None)
    fields.pop("modality_names", None)
    fields.update(parse_json_option(model_args.config_overrides, "--config_overrides") or {})
    fields.update(config_field_overrides(model_args))
    return fields


def build_config(data: BuiltinDataset, model_args: ModelArguments) -> PosAttnConfig:
    """PosAttnConfig from the preset, the flag overrides, the data's modalities and labels."""
    fields = config_fields(model_args)
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


def check_same_modalities(checkpoint: str, config: PosAttnConfig) -> None:
    """Refuse a checkpoint whose modalities (names, in order) differ from the data's: per-modality weights (stems,
    modality embeddings, norms, mask embeddings) are stored by index, so a different list would load each modality's
    weights into another modality, silently wherever the shapes happen to agree."""
    saved = PosAttnConfig.from_pretrained(checkpoint).modality_names
    if list(saved) != list(config.modality_names):
        raise ValueError(
            f"--model_name_or_path {checkpoint}: the checkpoint's modalities {list(saved)} differ from the data's "
            f"{list(config.modality_names)}. Per-modality weights are stored by position, so they would load into the "
            "wrong modalities. Fine-tune on data with the same modality names in the same order (e.g. the loader's "
            "`modalities` option), or train from scratch."
        )


def _load_checked(model_class, model_args: ModelArguments, config: PosAttnConfig):
    """`from_pretrained` that says which encoder weights did not come from the checkpoint. A fresh head (a classifier
    on a pretraining checkpoint, or on one with another number of labels) is expected; encoder weights that are
    missing or of another shape mean the architecture changed, and would silently train from random."""
    check_same_modalities(model_args.model_name_or_path, config)
    model, info = model_class.from_pretrained(
        model_args.model_name_or_path, config=config, attn_implementation=model_args.attn_implementation,
        ignore_mismatched_sizes=True, output_loading_info=True,
    )
    prefix = f"{model_class.base_model_prefix}."
    fresh = sorted(key for key in info["missing_keys"] if key.startswith(prefix))
    fresh += sorted(key for key, *_ in info["mismatched_keys"] if key.startswith(prefix))
    if fresh:
        logger.warning(
            "%d encoder weight(s) were NOT loaded from %s (missing or of another shape; the model config differs "
            "from the checkpoint's): %s", len(fresh), model_args.model_name_or_path, ", ".join(fresh[:10]),
        )
    return model


def build_model(data: BuiltinDataset, model_args: ModelArguments) -> PosAttnForSequenceClassification:
    """A fresh `PosAttnForSequenceClassification`, or one whose encoder is loaded from `model_name_or_path` (a
    classification or a pretraining checkpoint; the classifier is initialised fresh when the checkpoint has none or
    another number of labels, and transformers reports it as newly initialised)."""
    config = build_config(data, model_args)
    if model_args.model_name_or_path:
        return _load_checked(PosAttnForSequenceClassification, model_args, config)
    return PosAttnForSequenceClassification._from_config(config, attn_implementation=model_args.attn_implementation)


def build_pretraining_model(data: BuiltinDataset, model_args: ModelArguments) -> PosAttnForPreTraining:
    """A fresh `PosAttnForPreTraining` for the data's modalities (no labels), or one continued from
    `model_name_or_path`."""
    config = PosAttnConfig(modalities=data.modalities, **config_fields(model_args))
    if model_args.model_name_or_path:
        return _load_checked(PosAttnForPreTraining, model_args, config)
    return PosAttnForPreTraining._from_config(config, attn_implementation=model_args.attn_implementation)


__all__ = [
    "build_processor", "encode_splits", "config_fields", "build_config", "build_model", "build_pretraining_model",
    "apply_stem", "build_augmentation", "augmented_split",
]

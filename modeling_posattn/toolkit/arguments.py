"""The three argument groups of `posattn-train`, as in transformers' example scripts: what model, what data, how to
train. Every field is also a recipe key (`configuration/*.json`)."""

import dataclasses
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..positional_encodings import (
    ABSOLUTE_POSITION_ENCODINGS,
    POSITION_FUSIONS,
    RELATIVE_POSITION_ENCODINGS,
)
from .data import BUILTIN_DATASETS


@dataclass
class ModelArguments:
    """What model to train: a size preset plus overrides of any `PosAttnConfig` field."""

    _argument_group_name = "Model"

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
        default=None, metadata={"help": "Absolute encoding.", "choices": tuple(ABSOLUTE_POSITION_ENCODINGS)}
    )
    relative_position_encoding: str | None = field(
        default=None, metadata={"help": "Relative encoding.", "choices": tuple(RELATIVE_POSITION_ENCODINGS)}
    )
    position_fusion: str | None = field(
        default=None, metadata={"help": "Fusion of the absolute encoding.", "choices": tuple(POSITION_FUSIONS)}
    )
    pooling: str | None = field(default=None, metadata={"help": "Pooling: mean or cls."})
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
    mask_ratio: float | None = field(
        default=None, metadata={"help": "Pretraining (posattn-pretrain): expected fraction of tokens masked, in (0, 1)."}
    )
    mask_span_length: int | None = field(
        default=None, metadata={"help": "Pretraining: tokens per masked span (time cells per window when time_aligned)."}
    )
    mask_mode: str | None = field(
        default=None, metadata={"help": "Pretraining: masking mode.", "choices": ("per_modality", "time_aligned")}
    )
    mask_span_seconds: float | None = field(
        default=None, metadata={"help": "Pretraining: time_aligned window in seconds (default: from the clocks)."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": 'JSON object of further PosAttnConfig fields, e.g. \'{"rope_parameters": {...}}\'.'}
    )
    attn_implementation: str | None = field(
        default="sdpa", metadata={"help": "Attention kernel.", "choices": ("sdpa", "eager", "flex_attention")}
    )


# ModelArguments fields that are not PosAttnConfig fields; every other field overrides the config field of its name.
MODEL_ARGUMENTS_NOT_IN_CONFIG = ("model_config", "model_name_or_path", "config_overrides", "attn_implementation")


def config_field_overrides(model_args: ModelArguments) -> dict:
    """The PosAttnConfig fields that `model_args` sets (those left at None are not overrides)."""
    return {
        f.name: getattr(model_args, f.name)
        for f in dataclasses.fields(model_args)
        if f.name not in MODEL_ARGUMENTS_NOT_IN_CONFIG and getattr(model_args, f.name) is not None
    }


@dataclass
class DataArguments:
    """What data to train and evaluate on."""

    _argument_group_name = "Data"

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
        metadata={
            "help": "JSON object of loader options (built-in loader kwargs, or datasets.load_dataset kwargs such as "
            '{"data_files": {"train": "a.parquet", "test": "b.parquet"}}). A recipe\'s options apply only to the '
            "recipe's own dataset_name."
        },
    )
    modalities: str | None = field(
        default=None,
        metadata={"help": "Modality spec (JSON or a path to a JSON file) for datasets other than the built-in ones."},
    )
    stem: str | None = field(
        default=None,
        metadata={
            "help": 'Stem of every feature modality (JSON, e.g. \'{"type": "conv", "kernel_size": 8, "stride": 1}\'; see '
            "PosAttnConfig): written into the modality specs, so the processor's frame grouping and the model agree."
        },
    )
    augmentation: str | None = field(
        default=None,
        metadata={
            "help": 'Training-time augmentation of raw samples (JSON of TimeSeriesAugmentation strengths, e.g. '
            '\'{"jitter": 0.03, "scaling": 0.1, "time_warp": 0.2, "window_slice": 0.9}\'); the train split is then '
            "processed on the fly."
        },
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
        default=0.1,
        metadata={"help": "Fraction of train carved out as validation when there is no validation split (0: none)."},
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
    """`TrainingArguments` plus early stopping, CPU math settings, output-folder protection and the global-batch rule."""

    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement (off when unset)."}
    )
    early_stopping_threshold: float = field(default=0.0, metadata={"help": "Minimum improvement that counts."})
    weight_averaging_decay: float | None = field(
        default=None,
        metadata={
            "help": "Keep an EMA of the weights with this decay per optimizer step and end training with it (model "
            "selection without validation rows; needs load_best_model_at_end false)."
        },
    )
    torch_num_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads for torch's intra-op parallelism (torch.set_num_threads) in each process; unset or 0: "
            "torch's default (OMP_NUM_THREADS, else one per core). The small presets gain little from threads and "
            "lose a lot when the cores are shared, hence 1 in the recipes."
        },
    )
    flush_denormal: bool = field(
        default=True,
        metadata={
            "help": "Flush denormal floats (|x| < 1.2e-38 in float32) to zero on CPU for the whole process "
            "(torch.set_flush_denormal). Softmax probabilities that underflow are denormal, e.g. under alibi's "
            "penalties at long range, and many x86 CPUs compute with them in microcode, several times slower "
            "(docs/speed_notes.md). Values that small change no result that matters. Set before training starts, so "
            "torch's worker threads inherit it; false leaves the mode as it is."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train into an output_dir that already holds results (they are replaced)."}
    )
    keep_global_batch: bool = field(
        default=True,
        metadata={
            "help": "Read per_device_train_batch_size as the batch of ONE process: with N processes each gets 1/N of "
            "it, so the global batch, the number of steps and the result stay those of a single-process run. "
            "--keep_global_batch false: each process takes the full per-device batch (global batch x N)."
        },
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, PosAttnTrainingArguments)

__all__ = ["ModelArguments", "DataArguments", "PosAttnTrainingArguments", "ARGUMENT_CLASSES", "config_field_overrides"]

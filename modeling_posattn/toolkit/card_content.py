"""The contents of a model card, computed from a config: metadata (`ModelCardData` with its model-index), and the
rows of the modality, encoding, recipe and results tables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from ..configuration_posattn import PosAttnConfig
from .card_text import (
    ENCODING_DESCRIPTIONS,
    ENCODING_REFERENCES,
    GENERAL_REFERENCES,
    REFERENCES,
    SYNTHETIC_DATASET_NAME,
    TIME_BASED_ENCODINGS,
)

# Trainer bookkeeping, shown in the card body but not evaluation metrics of the model-index.
# Trainer bookkeeping, shown in the card body but not evaluation metrics of the model-index.
NON_METRIC_KEYS = {"runtime", "samples_per_second", "steps_per_second", "epoch", "step", "global_step", "total_flos"}
METRIC_PREFIXES = ("eval_", "test_", "validation_")


def format_value(value: Any) -> str:
    """How a result appears in the card body: floats with 4 decimals (`0.6931`; 4 significant digits when very small
    or large), everything else as `str` gives it."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4f}" if value == 0 or 1e-4 <= abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def format_setting(value: Any) -> str:
    """How a hyperparameter appears: floats in short form (`0.001`, `5e-05`)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def metric_type(key: str) -> str:
    """`eval_accuracy` -> `accuracy`: the metric id of a Trainer metric key."""
    for prefix in METRIC_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _as_config(config: PosAttnConfig | Mapping[str, Any] | str | os.PathLike) -> PosAttnConfig:
    if isinstance(config, PosAttnConfig):
        return config
    if isinstance(config, Mapping):  # e.g. config.json's content, which omits default values
        return PosAttnConfig.from_dict({key: value for key, value in config.items() if key != "auto_map"})
    if isinstance(config, (str, os.PathLike)):
        return PosAttnConfig.from_pretrained(config)
    if hasattr(config, "to_dict"):
        return PosAttnConfig.from_dict(config.to_dict())
    raise TypeError(f"`config` must be a PosAttnConfig, a dict or a checkpoint folder, got {type(config).__name__}.")


def _table_rows(values: Mapping[str, Any] | None, formatter=format_value) -> list[tuple[str, str]]:
    return [(str(key), formatter(value).replace("|", "\\|")) for key, value in (values or {}).items()]


def _label_names(config: PosAttnConfig) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[key]) for key in sorted(id2label, key=int)]
    return [] if all(name == f"LABEL_{i}" for i, name in enumerate(names)) else names


def encoding_rows(config: PosAttnConfig) -> list[dict[str, str]]:
    absolute, relative = config.absolute_position_encoding, config.relative_position_encoding
    rows = [
        {"part": "Absolute", "name": absolute, "description": ENCODING_DESCRIPTIONS["absolute"][absolute]},
        {"part": "Relative", "name": relative, "description": ENCODING_DESCRIPTIONS["relative"][relative]},
    ]
    fusion = config.position_fusion
    if absolute == "none":
        rows.append({"part": "Fusion", "name": fusion, "description": "Unused: there is no absolute encoding to fuse."})
    else:
        rows.append({"part": "Fusion", "name": fusion, "description": ENCODING_DESCRIPTIONS["fusion"][fusion]})
    return rows


def encoding_parameters(config: PosAttnConfig) -> list[str]:
    absolute, relative = config.absolute_position_encoding, config.relative_position_encoding
    parameters = []
    if absolute == "learned" or relative in ("rope", "time_rope") or absolute == "multiscale":
        parameters.append(f"`max_position_embeddings` = {config.max_position_embeddings}")
    if relative in ("rope", "time_rope"):
        rope = dict(config.rope_parameters or {})
        parameters.append("`rope_parameters` = " + ", ".join(f"{key}: {value}" for key, value in sorted(rope.items())))
    if {absolute, relative} & TIME_BASED_ENCODINGS:
        parameters.append(f"`time_units_per_second` = {config.time_units_per_second:g}")
    if absolute == "conditional":
        parameters.append(f"`conditional_kernel_size` = {config.conditional_kernel_size}")
    if absolute == "multiscale":
        parameters.append(f"`multiscale_num_bands` = {config.multiscale_num_bands}")
    if relative == "relative_bias":
        parameters.append(
            f"`relative_attention_num_buckets` = {config.relative_attention_num_buckets}, "
            f"`relative_attention_max_distance` = {config.relative_attention_max_distance}"
        )
    return parameters


def references(config: PosAttnConfig) -> list[str]:
    keys = list(GENERAL_REFERENCES)
    used = [
        ("absolute", config.absolute_position_encoding),
        ("relative", config.relative_position_encoding),
    ]
    if config.absolute_position_encoding != "none":
        used.append(("fusion", config.position_fusion))
    for part in used:
        keys.extend(key for key in ENCODING_REFERENCES.get(part, ()) if key not in keys)
    return [REFERENCES[key] for key in keys]


def modality_rows(config: PosAttnConfig) -> list[dict[str, str]]:
    rows = []
    for name in config.modality_names:
        spec = config.modalities[name]
        if spec.get("input_dim") is not None:
            kind = f"features, `T x {spec['input_dim']}` floats"
        else:
            kind = f"token ids in `[0, {spec['vocab_size']})`"
        rate = spec.get("sampling_rate")
        rows.append({"name": name, "input": kind, "rate": f"{rate:g} tokens/s" if rate else "no clock (spread over the sample)"})
    return rows


def limitations(config: PosAttnConfig, synthetic: bool) -> list[str]:
    items = []
    if synthetic:
        items.append(
            "Trained on synthetic data only: the numbers above say how well the model solves the synthetic task, not "
            "how it would do on real recordings. Do not use it for decisions about people or real-world signals."
        )
    items.append(
        "Inputs must have exactly the modalities, feature sizes and rates listed above, laid out by the bundled "
        "processor; features are normalised with the statistics stored in `preprocessor_config.json`."
    )
    items.append(
        "A modality whose real sampling rate differs from the declared one gets wrong token times unless explicit "
        "`timestamps` are passed."
    )
    if config.absolute_position_encoding == "learned":
        items.append(
            f"The `learned` table holds {config.max_position_embeddings} positions per modality: longer inputs raise "
            "an error; truncate them with the processor's `max_tokens`."
        )
    if config.relative_position_encoding in ("rope", "time_rope") and (config.rope_parameters or {}).get("rope_type", "default") == "default":
        items.append(
            f"Rotary positions beyond the training length (`max_position_embeddings` = {config.max_position_embeddings}) "
            "are untested; quality may drop on much longer inputs."
        )
    items.append(
        "Attention is quadratic in the packed length (all modalities together); very long recordings need truncation "
        "or windowing."
    )
    items.append("The evaluation covers one dataset and one split; it says nothing about robustness to other data.")
    return items


def build_card_data(
    config: PosAttnConfig,
    *,
    model_name: str,
    dataset_name: str,
    dataset_id: str,
    eval_results: Mapping[str, float],
    eval_split: str | None,
    task_type: str,
    task_name: str,
    license: str | None,
    tags: list[str] | None = None,
) -> ModelCardData:
    results = []
    for key, value in eval_results.items():
        name = metric_type(key)
        if name in NON_METRIC_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(float(value)):
            continue
        results.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type=dataset_id,
                dataset_name=dataset_name,
                dataset_split=eval_split,
                metric_type=name,
                metric_name=key,
                metric_value=float(value),
            )
        )
    synthetic = dataset_name == SYNTHETIC_DATASET_NAME
    all_tags = [
        "posattn",
        "multimodal",
        "positional-encoding",
        "time-series",
        "custom_code",
        f"absolute-{config.absolute_position_encoding}",
        f"relative-{config.relative_position_encoding}",
    ]
    if synthetic:
        all_tags.append("synthetic")
    all_tags.extend(tags or [])
    return ModelCardData(
        library_name="transformers",
        license=license,
        tags=all_tags,
        datasets=[dataset_id],
        metrics=sorted({result.metric_type for result in results}) or None,
        model_name=model_name,
        eval_results=results or None,
    )

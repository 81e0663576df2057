"""Model cards for PosAttn checkpoints: `write_model_card` fills the top-level `model_card.md` template (Jinja, rendered
by `huggingface_hub.ModelCard.from_template`) and `validate_model_card` checks a card offline.

The card's YAML metadata is built with `huggingface_hub.ModelCardData` and `EvalResult`, so that the `model-index` the
Hub reads is exactly what `huggingface_hub` writes. `ModelCard.validate()` asks the Hub (network); `validate_model_card`
does what can be done offline: parse the YAML and the model-index back, check the round trip and the fields the Hub and
this project rely on.

Training-time code: a checkpoint never imports this module (it is not copied next to the model code).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from .configuration_posattn import PosAttnConfig

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "model_card.md"

# Written into the usage snippet when `repo_id` is unknown; `scripts/publish.py` replaces it with the target repo id.
REPO_ID_PLACEHOLDER = "<repo_id>"

SYNTHETIC_DATASET_NAME = "synthetic"

# One sentence per encoding name, by part of the model. Keep in step with `configuration_posattn.py`'s name tuples
# (a test checks that every name has a sentence).
ENCODING_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "absolute": {
        "none": "No absolute encoding: tokens carry only their content and modality embeddings, so order reaches the "
        "model through the relative encoding alone, if any.",
        "sinusoidal": "Fixed sine and cosine features of each token's index within its own modality (Vaswani et al., "
        "2017), computed on the fly, so there is no maximum length.",
        "learned": "A learned embedding table per modality, indexed by the token's position within its modality, "
        "holding at most `max_position_embeddings` positions per modality.",
        "dynamic": "Sinusoids whose frequencies are rescaled by the length of the token's modality in its own sample "
        "(tAPE, Foumani et al., 2023), so that the encoding adapts to each sequence's length.",
        "conditional": "Positions generated from content by a learned depthwise convolution over each modality's "
        "neighbouring tokens (CPVT, Chu et al., 2023): translation-equivariant and without a maximum length.",
        "multiscale": "Fourier features of each token's time in seconds over log-spaced frequency bands, with a learned "
        "gain per modality and band (as in Perceiver, Jaegle et al., 2021), so all modalities share one time axis.",
    },
    "relative": {
        "none": "No relative encoding: attention scores depend on content and the absolute encoding only.",
        "rope": "Rotary position embedding of the index within each modality (RoFormer, Su et al., 2021): queries and "
        "keys are rotated so that attention depends on the difference of indices.",
        "time_rope": "Rotary position embedding of absolute time, as TMRoPE in Qwen2.5-Omni (Xu et al., 2025): tokens of "
        "any modality at the same moment share a phase, so attention depends on the difference of times.",
        "alibi": "A fixed per-head linear penalty on the time distance between two tokens (ALiBi, Press et al., 2022), "
        "favouring nearby moments across all modalities.",
        "relative_bias": "A learned per-head bias over log-bucketed time distance (as in T5, Raffel et al., 2020), added "
        "to the attention scores.",
    },
    "fusion": {
        "add": "The absolute encoding is added to the content embedding (Vaswani et al., 2017).",
        "concat": "Content and absolute encoding are concatenated and mixed by a learned linear projection.",
        "gated": "A learned per-modality sigmoid gate, computed from content and position, decides per channel how much "
        "of the absolute encoding is added to the content.",
    },
}

REFERENCES: dict[str, str] = {
    "vaswani2017": "Vaswani et al., 2017. *Attention Is All You Need.* NeurIPS 2017. "
    "[arXiv:1706.03762](https://arxiv.org/abs/1706.03762) (the transformer; sinusoidal encoding added to content).",
    "su2021": "Su et al., 2021. *RoFormer: Enhanced Transformer with Rotary Position Embedding.* "
    "[arXiv:2104.09864](https://arxiv.org/abs/2104.09864) (RoPE).",
    "press2022": "Press, Smith and Lewis, 2022. *Train Short, Test Long: Attention with Linear Biases Enables Input "
    "Length Extrapolation.* ICLR 2022. [arXiv:2108.12409](https://arxiv.org/abs/2108.12409) (ALiBi).",
    "raffel2020": "Raffel et al., 2020. *Exploring the Limits of Transfer Learning with a Unified Text-to-Text "
    "Transformer.* JMLR 21. [arXiv:1910.10683](https://arxiv.org/abs/1910.10683) (T5 relative attention bias).",
    "foumani2023": "Foumani et al., 2023. *Improving Position Encoding of Transformers for Multivariate Time Series "
    "Classification* (ConvTran). Data Mining and Knowledge Discovery. "
    "[arXiv:2305.16642](https://arxiv.org/abs/2305.16642) (tAPE).",
    "chu2023": "Chu et al., 2023. *Conditional Positional Encodings for Vision Transformers* (CPVT). ICLR 2023. "
    "[arXiv:2102.10882](https://arxiv.org/abs/2102.10882).",
    "jaegle2021": "Jaegle et al., 2021. *Perceiver: General Perception with Iterative Attention.* ICML 2021. "
    "[arXiv:2103.03206](https://arxiv.org/abs/2103.03206) (Fourier position features).",
    "xu2025": "Xu et al., 2025. *Qwen2.5-Omni Technical Report.* [arXiv:2503.20215](https://arxiv.org/abs/2503.20215) "
    "(TMRoPE: time-aligned multimodal rotary positions, one id per 40 ms).",
}

# Always cited: the architecture itself.
GENERAL_REFERENCES = ("vaswani2017",)
# Cited when the config uses the encoding.
ENCODING_REFERENCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("absolute", "sinusoidal"): ("vaswani2017",),
    ("absolute", "learned"): ("vaswani2017",),
    ("absolute", "dynamic"): ("foumani2023",),
    ("absolute", "conditional"): ("chu2023",),
    ("absolute", "multiscale"): ("jaegle2021", "xu2025"),
    ("relative", "rope"): ("su2021",),
    ("relative", "time_rope"): ("su2021", "xu2025"),
    ("relative", "alibi"): ("press2022",),
    ("relative", "relative_bias"): ("raffel2020",),
    ("fusion", "add"): ("vaswani2017",),
}

TIME_BASED_ENCODINGS = {"multiscale", "time_rope", "alibi", "relative_bias"}

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


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    config: PosAttnConfig | Mapping[str, Any] | str | os.PathLike,
    dataset_name: str,
    dataset_description: str,
    training_summary: dict,
    eval_results: dict[str, float],
    recipe: dict | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    dataset_id: str | None = None,
    eval_split: str | None = None,
    license: str | None = "apache-2.0",
    task_type: str = "other",
    tags: list[str] | None = None,
    template_path: str | os.PathLike | None = None,
    studies: str | None = None,
) -> str:
    """Write `README.md` (the model card) into `output_dir` and return its path.

    Args:
        output_dir: the checkpoint folder.
        config: the model's `PosAttnConfig` (or config.json's dict, or the checkpoint folder).
        dataset_name: the dataset's name; `"synthetic"` marks the card as trained on synthetic data.
        dataset_description: a sentence or two on the data (what, how many samples, splits).
        training_summary: what training reported (e.g. `trainer.train().metrics`: loss, runtime, steps).
        eval_results: metric name -> value (e.g. `trainer.evaluate()`); `eval_`/`test_` prefixes are stripped for the
            model-index, Trainer bookkeeping (runtime, samples per second, epoch) stays in the body only.
        recipe: training hyperparameters (learning rate, batch size, epochs, seed...).
        model_name: the card's title and model-index name (default: the repository name or the folder's name).
        repo_id: the Hub repository, for the usage snippet (default: a placeholder that `scripts/publish.py` fills).
        dataset_id: the `datasets:` metadata entry and model-index dataset type (default: `dataset_name`).
        eval_split: the split the evaluation ran on, for the model-index.
        license, task_type, tags: metadata.
        template_path: a Jinja template (default: the repository's `model_card.md`).
        studies: Markdown of positional-encoding studies on this dataset (see `study_summaries`), shown as a section.
    """
    config = _as_config(config)
    output_dir = Path(output_dir)
    template_path = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not template_path.is_file():
        raise FileNotFoundError(f"Model card template not found at {template_path}: pass `template_path=`.")
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else output_dir.resolve().name)
    dataset_id = dataset_id or dataset_name
    synthetic = dataset_name == SYNTHETIC_DATASET_NAME
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    task_name = {
        "regression": "Multimodal sequence regression",
        "multi_label_classification": "Multimodal multi-label sequence classification",
    }.get(problem_type, "Multimodal sequence classification")
    card_data = build_card_data(
        config,
        model_name=model_name,
        dataset_name=dataset_name,
        dataset_id=dataset_id,
        eval_results=eval_results,
        eval_split=eval_split,
        task_type=task_type,
        task_name=task_name,
        license=license,
        tags=tags,
    )
    example = []
    for name in config.modality_names:
        spec = config.modalities[name]
        example.append(f'"{name}": ' + (f"(T, {spec['input_dim']}) floats" if spec.get("input_dim") else "1-D ints"))
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=model_name,
        repo_id=repo_id or REPO_ID_PLACEHOLDER,
        synthetic=synthetic,
        problem_type=problem_type.replace("_", " "),
        label_names=_label_names(config),
        example_shapes=", ".join(example),
        modality_rows=modality_rows(config),
        encoding_rows=encoding_rows(config),
        encoding_parameters=encoding_parameters(config),
        architecture=(
            f"{config.num_hidden_layers} pre-norm layers, hidden size {config.hidden_size}, "
            f"{config.num_attention_heads} heads, feed-forward {config.intermediate_size}, `{config.pooling}` pooling"
        ),
        dataset_name=dataset_name,
        dataset_description=dataset_description.strip(),
        recipe_rows=_table_rows(recipe, format_setting),
        summary_rows=_table_rows(training_summary),
        eval_rows=_table_rows(eval_results),
        eval_dataset_label=f"`{dataset_name}`" + (f", split `{eval_split}`" if eval_split else ""),
        limitations=limitations(config, synthetic),
        references=references(config),
        studies=studies,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "README.md"
    card.save(path)
    return str(path)


def study_summaries(dataset_name: str, results_dir: str | os.PathLike | None = None) -> str | None:
    """The committed ablation tables (`docs/results/<study>/summary.md`, written by `scripts/ablate.py`) of every study
    on `dataset_name` (`natops` -> natops, natops_multirate, ...), as Markdown for a card; None when there are none."""
    results_dir = Path(results_dir) if results_dir is not None else TEMPLATE_PATH.parent / "docs" / "results"
    tables = [
        f"### {path.parent.name}\n\n{path.read_text().strip()}"
        for path in sorted(results_dir.glob(f"{dataset_name}*/summary.md"))
    ]
    return "\n\n".join(tables) if tables else None


def validate_model_card(card: str | os.PathLike | ModelCard) -> ModelCard:
    """Offline checks of a card (the Hub's own `ModelCard.validate()` needs the network). Returns the parsed card.

    `card` is a `ModelCard`, a path to a README.md, or the card's text (a string starting with `---`).

    Raises `ValueError` naming the problem when: the YAML block is missing or does not parse; `ModelCardData` cannot
    read it (a malformed model-index raises here); `library_name` is not `transformers`; the `posattn` tag is missing;
    `datasets` is not a list of strings; the model-index does not survive `model_index_to_eval_results` /
    `eval_results_to_model_index`; a metric value is not a finite number; or the card does not survive a text round trip.
    """
    if isinstance(card, ModelCard):
        text = str(card)
    elif isinstance(card, os.PathLike) or (isinstance(card, str) and "\n" not in card and not card.startswith("---")):
        text = Path(card).read_text(encoding="utf-8")  # a path
    else:
        text = card
    if not text.lstrip().startswith("---"):
        raise ValueError("The model card has no YAML metadata block (it must start with '---').")
    try:
        parsed = ModelCard(text)
    except Exception as error:  # yaml errors, invalid model-index, invalid eval results
        raise ValueError(f"The model card's metadata does not parse: {error}") from error
    data = parsed.data.to_dict()
    if data.get("library_name") != "transformers":
        raise ValueError(f"`library_name` must be 'transformers', got {data.get('library_name')!r}.")
    if "posattn" not in (data.get("tags") or []):
        raise ValueError("The card's `tags` must include 'posattn'.")
    datasets = data.get("datasets")
    if not isinstance(datasets, list) or not datasets or not all(isinstance(item, str) for item in datasets):
        raise ValueError(f"`datasets` must be a non-empty list of dataset ids, got {datasets!r}.")
    if "model-index" in data:
        model_name, results = model_index_to_eval_results(data["model-index"])
        if not model_name:
            raise ValueError("The model-index has no model name.")
        for result in results:
            if isinstance(result.metric_value, bool) or not isinstance(result.metric_value, (int, float)):
                raise ValueError(f"Metric {result.metric_type!r} has a non-numeric value {result.metric_value!r}.")
            if not math.isfinite(result.metric_value):
                raise ValueError(f"Metric {result.metric_type!r} is not finite: {result.metric_value!r}.")
        if eval_results_to_model_index(model_name, results) != data["model-index"]:
            raise ValueError("The model-index does not survive a round trip through huggingface_hub's EvalResult.")
    reparsed = ModelCard(str(parsed))
    if reparsed.data.to_dict() != data or reparsed.text != parsed.text:
        raise ValueError("The model card does not survive a text round trip.")
    return parsed


__all__ = ["ENCODING_DESCRIPTIONS", "REFERENCES", "REPO_ID_PLACEHOLDER", "validate_model_card", "write_model_card"]

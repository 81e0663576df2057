"""Model cards for PosAttn checkpoints: `write_model_card` fills the project's `model_card.md` template (Jinja,
rendered by `huggingface_hub.ModelCard.from_template`; shipped in the package, see `recipes.MODEL_CARD_TEMPLATE`).

The card's YAML metadata is built with `huggingface_hub.ModelCardData` and `EvalResult` (`card_content.py`), so that
the `model-index` the Hub reads is exactly what `huggingface_hub` writes; `card_validation.validate_model_card` checks a
card offline. Training-time code: a checkpoint never imports this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from ..configuration_posattn import PosAttnConfig
from .card_content import (
    _as_config,
    _label_names,
    _table_rows,
    build_card_data,
    encoding_parameters,
    encoding_rows,
    format_setting,
    limitations,
    modality_rows,
    references,
)
from .card_text import SYNTHETIC_DATASET_NAME
from .recipes import MODEL_CARD_TEMPLATE

# The usage snippet's `repo = "..."` line: the checkpoint folder until `posattn-publish` writes the target repository.
USAGE_REPO_LINE = re.compile(r'^repo = "[^"\n]*"', re.MULTILINE)


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
    task_name: str | None = None,
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
        repo_id: the Hub repository, for the usage snippet (default: the checkpoint folder's absolute path, which
            loads as it is; `posattn-publish` writes the target repository there).
        dataset_id: the `datasets:` metadata entry and model-index dataset type (default: `dataset_name`).
        eval_split: the split the evaluation ran on, for the model-index.
        license, task_type, tags: metadata; task_name: the model-index task (default: from the problem type).
        template_path: a Jinja template (default: the project's `model_card.md`, shipped in the package).
        studies: Markdown of positional-encoding studies on this dataset (see `study_summaries`), shown as a section.
    """
    config = _as_config(config)
    output_dir = Path(output_dir)
    template = Path(template_path) if template_path is not None else MODEL_CARD_TEMPLATE
    if not template.is_file():
        raise FileNotFoundError(f"Model card template not found at {template}: pass `template_path=`.")
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else output_dir.resolve().name)
    dataset_id = dataset_id or dataset_name
    synthetic = dataset_name == SYNTHETIC_DATASET_NAME
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    task_name = task_name or {
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
        template_str=template.read_text(encoding="utf-8"),
        model_name=model_name,
        repo_id=repo_id or str(output_dir.resolve()),
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
    """The committed ablation tables (`docs/results/<study>/summary.md` under the current folder, a checkout's root;
    written by `scripts/ablate.py`) of every study on `dataset_name` (`natops` -> natops, natops_multirate, ...), as Markdown for a card; None when there are none."""
    results_dir = Path(results_dir) if results_dir is not None else Path("docs") / "results"
    tables = [
        f"### {path.parent.name}\n\n{path.read_text().strip()}"
        for path in sorted(results_dir.glob(f"{dataset_name}*/summary.md"))
    ]
    return "\n\n".join(tables) if tables else None


__all__ = ["USAGE_REPO_LINE", "study_summaries", "write_model_card"]

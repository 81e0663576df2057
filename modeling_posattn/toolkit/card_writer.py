"""The model card of a training run: what was trained, on what, with which recipe, and how it scored."""

import logging
import math
from typing import Any

from .data import BUILTIN_DATASETS
from .data_sources import dataset_slug
from .json_options import parse_json_option

logger = logging.getLogger(__name__)


def recipe_summary(model_args, data_args, training_args, provenance: str) -> dict[str, Any]:
    """The settings a reader of the card needs to reproduce the run."""
    recipe = {
        "dataset": data_args.dataset_name,
        "dataset_options": parse_json_option(data_args.dataset_options, "--dataset_options") or {},
        "validation_split": provenance,
        "model_preset": model_args.model_config,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "weight_decay": training_args.weight_decay,
        "label_smoothing_factor": training_args.label_smoothing_factor,
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


def write_run_card(trainer, data, data_args, train_metrics, eval_results, eval_split, recipe) -> None:
    """Write the card (README.md) into the run's output folder."""
    from .card import study_summaries, write_model_card

    clean = {
        key: value for key, value in eval_results.items()
        if isinstance(value, (int, float)) and math.isfinite(value) and not key.endswith("_samples")
    }
    builtin = data_args.dataset_name in BUILTIN_DATASETS
    path = write_model_card(
        trainer.args.output_dir,
        config=trainer.model.config,
        dataset_name=data_args.dataset_name if builtin else dataset_slug(data_args.dataset_name),
        dataset_description=data.description,
        training_summary=train_metrics,
        eval_results=clean,
        recipe=recipe,
        eval_split=eval_split,
        studies=study_summaries(data_args.dataset_name) if builtin else None,
    )
    logger.info("Model card written to %s", path)


__all__ = ["recipe_summary", "write_run_card"]

"""`posattn-pretrain`: self-supervised masked-reconstruction pretraining of a PosAttn encoder with the stock `Trainer`.

    posattn-pretrain                                              # the synthetic data -> outputs/synthetic-pretrain
    posattn-pretrain --config natops --mask_mode time_aligned     # a recipe's data, model and budget
    posattn-pretrain --config pretrain_natops                     # the bundled pretraining recipe (configuration/)
    posattn-train --config natops --model_name_or_path outputs/natops-pretrain   # then fine-tune from it

The same recipes, flags and data loaders as `posattn-train` (`cli.parse_args`, `data_sources`, `builders`), with three
differences: labels are ignored (the label column is dropped before training), the test split is never read (a
checkpoint pretrained on the training split only can be fine-tuned and tested on the same dataset without leakage), and
the model is [`PosAttnForPreTraining`] (mask settings: `--mask_ratio`, `--mask_span_length`, `--mask_mode`,
`--mask_span_seconds`). Validation (the dataset's split, or the recipe's carve of train) reports the reconstruction
loss `eval_loss` on masks drawn from a fixed seed, so that epochs compare; it selects the best checkpoint. The output
folder is a complete remote-code checkpoint (`AutoModelForPreTraining`, `AutoModel`, ... with `trust_remote_code`) with
the fitted processor and a model card saying what it was pretrained on.
"""

import logging
import sys
import time
from typing import Any

import torch
from transformers import DataCollatorWithPadding, Trainer, set_seed

from .builders import build_processor, build_pretraining_model, encode_splits
from .card_writer import recipe_summary
from .data_sources import dataset_slug, load_data, prepare_splits
from .run import configure_cpu_math, early_stopping, guard_output_dir, keep_global_batch, setup_logging

logger = logging.getLogger("modeling_posattn.toolkit.pretrain")

# The pretraining card's template, next to this module (package data).
PRETRAINING_CARD_TEMPLATE = "model_card_pretraining.md"


def default_pretraining_output_dir(dataset_name: str) -> str:
    return f"outputs/{dataset_slug(dataset_name)}-pretrain"


def parse_pretraining_args(argv: list[str] | None = None, overrides: dict[str, Any] | None = None):
    """`cli.parse_args`, then what pretraining changes: one seed, the output folder `outputs/<dataset>-pretrain` unless
    one is given on the command line (a recipe's `output_dir` is its fine-tuning folder), selection on the validation
    loss, and no predictions gathered during evaluation (the loss is the only metric)."""
    from .cli import _explicit_keys, parse_args

    argv = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args, seeds = parse_args(argv, overrides)
    if seeds:
        raise ValueError(f"posattn-pretrain runs one seed at a time, got {seeds}.")
    if "output_dir" not in _explicit_keys(argv) | set(overrides or {}):
        training_args.output_dir = default_pretraining_output_dir(data_args.dataset_name)
    training_args.metric_for_best_model, training_args.greater_is_better = "loss", False
    training_args.prediction_loss_only = True
    return model_args, data_args, training_args


def validation_losses_by_modality(trainer: Trainer, dataset) -> dict[str, float]:
    """The eval-mode reconstruction loss of each modality over `dataset`, each masked token weighted equally."""
    model = trainer.model.eval()
    names = model.config.modality_names
    totals, counts = torch.zeros(len(names), dtype=torch.float64), torch.zeros(len(names), dtype=torch.float64)
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader(dataset):
            output = model(**{key: value.to(model.device) for key, value in batch.items()})
            counted = output.masked_token_counts.double().cpu()
            totals += output.modality_losses.double().cpu() * counted
            counts += counted
    return {f"eval_loss_{name}": float(totals[i] / counts[i]) for i, name in enumerate(names) if counts[i] > 0}


def write_pretraining_card(trainer, data, data_args, train_metrics, eval_metrics, recipe, splits) -> str:
    """The card of a pretraining checkpoint: what it was pretrained on, the objective, the loss it reached."""
    from importlib.resources import files

    from .card import write_model_card
    from .data import BUILTIN_DATASETS

    config = trainer.model.config
    builtin = data_args.dataset_name in BUILTIN_DATASETS
    used = ", ".join(f"{name} {len(split)} samples" for name, split in splits.items())
    description = (
        f"{data.description.strip()} Pretraining read only these splits, without labels: {used}. "
        "No test data was used."
    )
    mask = {
        "mask_mode": config.mask_mode,
        "mask_ratio": config.mask_ratio,
        "mask_span_length": config.mask_span_length,
        "mask_span_seconds": config.mask_span_seconds if config.mask_span_seconds is not None else "default",
    }
    clean = {key: value for key, value in eval_metrics.items() if key.startswith("eval_loss")}
    return write_model_card(
        trainer.args.output_dir,
        config=config,
        dataset_name=data_args.dataset_name if builtin else dataset_slug(data_args.dataset_name),
        dataset_description=description,
        training_summary=train_metrics,
        eval_results=clean,
        recipe={**mask, **recipe},
        eval_split="validation",
        task_type="feature-extraction",
        task_name="Masked reconstruction (self-supervised pretraining)",
        tags=["pretraining", "masked-reconstruction", f"mask-{config.mask_mode.replace('_', '-')}"],
        template_path=files(__package__) / PRETRAINING_CARD_TEMPLATE,
    )


def run_pretraining(
    model_args=None, data_args=None, training_args=None, *, argv: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Pretrain and save; return the train metrics and the validation losses (`eval_loss`, `eval_loss_<modality>`)."""
    if training_args is None:
        model_args, data_args, training_args = parse_pretraining_args(argv if argv is not None else [], overrides)
    setup_logging(training_args)
    started = time.perf_counter()
    configure_cpu_math(training_args)
    guard_output_dir(training_args)
    keep_global_batch(training_args)

    data = load_data(data_args, model_args)
    splits, provenance = prepare_splits(data, data_args)
    splits.pop("test", None)  # never seen in pretraining: fine-tuning tests on it
    processor = build_processor(data, data_args, splits["train"])
    encoded = encode_splits(splits, processor, training_args, num_proc=data_args.preprocessing_num_workers)
    encoded = {name: split.remove_columns([c for c in ("labels",) if c in split.column_names]) for name, split in encoded.items()}
    if "validation" not in encoded:
        logger.info("No validation split: pretraining for the fixed budget, keeping the last weights.")
        training_args.load_best_model_at_end, training_args.eval_strategy = False, "no"
        training_args.metric_for_best_model = None

    set_seed(training_args.seed)
    model = build_pretraining_model(data, model_args)
    logger.info("Pretraining %s parameters on %s: mask %s, ratio %g, span %d", f"{model.num_parameters():,}",
                data_args.dataset_name, model.config.mask_mode, model.config.mask_ratio, model.config.mask_span_length)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded.get("validation"),
        processing_class=processor,
        data_collator=DataCollatorWithPadding(processor),
        callbacks=early_stopping(training_args, "validation" in encoded),
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    train_metrics = {**train_result.metrics, "train_samples": len(encoded["train"])}
    train_metrics["pretraining_wall_seconds"] = round(time.perf_counter() - started, 1)
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    eval_metrics = {}
    if "validation" in encoded:
        eval_metrics = trainer.evaluate(encoded["validation"])
        eval_metrics.update(validation_losses_by_modality(trainer, encoded["validation"]))
        eval_metrics["eval_samples"] = len(encoded["validation"])
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    if trainer.is_world_process_zero():
        recipe = recipe_summary(model_args, data_args, training_args, provenance)
        path = write_pretraining_card(trainer, data, data_args, train_metrics, eval_metrics, recipe, splits)
        logger.info("Model card written to %s", path)
        print(f"\nPretrained on {data_args.dataset_name} ({time.perf_counter() - started:.1f} s end to end) -> "
              f"{training_args.output_dir}; validation: {provenance}")
        for key, value in eval_metrics.items():
            if key.startswith("eval_loss"):
                print(f"  {key}: {value:.4f}")
    return {**train_metrics, **eval_metrics}


def main(argv: list[str] | None = None) -> int:
    """`posattn-pretrain` (and `python scripts/pretrain.py`); the exit status of the console script."""
    if argv is None:
        argv = sys.argv[1:]
    if any(flag in argv for flag in ("-h", "--help", "--help_all", "--help-all")):
        print(__doc__)
        print("Every posattn-train flag applies (model, data, training); they follow.\n")
    run_pretraining(argv=argv)
    return 0


__all__ = ["main", "parse_pretraining_args", "run_pretraining", "write_pretraining_card"]

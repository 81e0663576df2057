"""One training run with the stock `Trainer` (`run_training`), and several seeds of it (`run_seeds`).

```python
from modeling_posattn.toolkit.run import run_training

metrics = run_training(overrides={"absolute_position_encoding": "none", "num_train_epochs": 3,
                                  "output_dir": "outputs/ablation/none-seed1"}, seed=1)
metrics["test_accuracy"]
```
"""

import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    set_seed,
)

from .arguments import DataArguments, ModelArguments, PosAttnTrainingArguments
from .averaging import WeightAveragingCallback
from .builders import apply_stem, augmented_split, build_augmentation, build_model, build_processor, encode_splits
from .card_writer import recipe_summary, write_run_card
from .data_sources import load_data, prepare_splits
from .evaluation import (
    LOWER_IS_BETTER,
    MAIN_METRICS,
    build_compute_metrics,
    format_results_table,
    main_metric,
)

logger = logging.getLogger("modeling_posattn.toolkit.run")

RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "test_results.json")


def setup_logging(training_args: PosAttnTrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity(max(level, logging.WARNING))
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def resolve_best_metric(training_args: PosAttnTrainingArguments, problem_type: str, has_validation: bool) -> None:
    """`metric_for_best_model="auto"` -> the problem type's main metric and direction; without a validation split
    there is nothing to select on, so evaluation and best-checkpoint loading are switched off."""
    if not has_validation:
        if training_args.load_best_model_at_end or training_args.eval_strategy != "no":
            logger.info("No validation split: training for the fixed budget and keeping the last weights.")
        training_args.load_best_model_at_end, training_args.eval_strategy = False, "no"
        training_args.metric_for_best_model = None
        return
    _, key, greater = main_metric(problem_type)
    if training_args.metric_for_best_model in (None, "auto"):
        training_args.metric_for_best_model, training_args.greater_is_better = key, greater
    elif training_args.metric_for_best_model.removeprefix("eval_").endswith(LOWER_IS_BETTER):
        training_args.greater_is_better = False


def configure_cpu_math(training_args: PosAttnTrainingArguments) -> None:
    """The run's process-wide CPU settings: flush denormals first (threads started later inherit the mode), then the
    intra-op thread count."""
    if training_args.flush_denormal:
        torch.set_flush_denormal(True)
    if training_args.torch_num_threads:
        torch.set_num_threads(training_args.torch_num_threads)


def keep_global_batch(training_args: PosAttnTrainingArguments) -> None:
    """Under N processes, give each 1/N of the per-device batch so that the global batch is a single process's."""
    world_size = training_args.world_size
    if not training_args.keep_global_batch or world_size == 1:
        return
    batch = training_args.per_device_train_batch_size
    if batch % world_size:
        raise ValueError(
            f"per_device_train_batch_size={batch} does not split over {world_size} processes (keep_global_batch): "
            f"use a multiple of {world_size}, or --keep_global_batch false to give each process {batch} rows."
        )
    training_args.per_device_train_batch_size = batch // world_size
    logger.info("keep_global_batch: %d processes x %d rows = the single-process batch of %d.", world_size,
                batch // world_size, batch)


def guard_output_dir(training_args: PosAttnTrainingArguments) -> None:
    """Refuse to train into a folder that holds an earlier run, unless asked to replace it (or to resume it)."""
    output_dir = Path(training_args.output_dir)
    earlier = output_dir.is_dir() and any(output_dir.iterdir())
    if earlier and not training_args.overwrite_output_dir and not training_args.resume_from_checkpoint:
        raise ValueError(
            f"Output folder {output_dir} already holds a run. Pass --overwrite_output_dir to replace it, "
            "--resume_from_checkpoint to continue it, or another --output_dir."
        )
    if earlier and training_args.should_save:
        for name in RESULT_FILES:  # `Trainer.save_metrics` merges into an existing all_results.json
            (output_dir / name).unlink(missing_ok=True)


def early_stopping(training_args: PosAttnTrainingArguments, has_validation: bool) -> list[EarlyStoppingCallback]:
    """Trainer's early stopping when asked for and there is a validation split to stop on."""
    if not (training_args.early_stopping_patience and has_validation):
        return []
    return [EarlyStoppingCallback(training_args.early_stopping_patience, training_args.early_stopping_threshold)]


def _parse_if_needed(model_args, data_args, training_args, argv, overrides):
    given = [model_args is not None, data_args is not None, training_args is not None]
    if any(given) and (not all(given) or argv is not None or overrides):
        raise ValueError("Pass either all three argument objects, or `argv` / `overrides` to parse them, not a mix.")
    if all(given):
        return model_args, data_args, training_args
    from .cli import parse_args

    model_args, data_args, training_args, seeds = parse_args(argv if argv is not None else [], overrides)
    if seeds:
        raise ValueError(f"run_training runs one seed; for {seeds} use run_seeds.")
    return model_args, data_args, training_args


def _evaluate(trainer, dataset, prefix: str) -> dict[str, float]:
    metrics = trainer.evaluate(dataset, metric_key_prefix=prefix)
    metrics[f"{prefix}_samples"] = len(dataset)
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics


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
    """Train, evaluate and save; return all metrics (`train_*`, `eval_*` on validation if any, `test_*` if a test split).

    Either pass the three argument objects, or let them be parsed from `argv` (default: no flags, i.e. the synthetic
    recipe) and `overrides` (a flat dict of any argument's name -> value). `seed` overrides the training seed.
    Writes into `output_dir`: the model and processor, `*_results.json`, `trainer_state.json`, the model card
    `README.md` and TensorBoard logs under `runs/`.
    """
    model_args, data_args, training_args = _parse_if_needed(model_args, data_args, training_args, argv, overrides)
    if seed is not None:
        training_args.seed = seed
    setup_logging(training_args)
    started = time.perf_counter()
    configure_cpu_math(training_args)
    guard_output_dir(training_args)
    keep_global_batch(training_args)

    data = load_data(data_args, model_args)
    apply_stem(data, data_args)
    if data.problem_type not in MAIN_METRICS:
        raise ValueError(f"posattn-train handles {sorted(MAIN_METRICS)}, not {data.problem_type!r}.")
    splits, provenance = prepare_splits(data, data_args)
    logger.info("Dataset %s: %s; validation: %s", data_args.dataset_name,
                ", ".join(f"{name} {len(split)}" for name, split in splits.items()), provenance)
    processor = build_processor(data, data_args, splits["train"])
    encoded = encode_splits(splits, processor, training_args, num_proc=data_args.preprocessing_num_workers)
    augmentation = build_augmentation(data_args, processor)
    if augmentation is not None:
        encoded["train"] = augmented_split(splits["train"], processor, augmentation, training_args.seed)
        training_args.remove_unused_columns = False  # the transform already returns model inputs only
    resolve_best_metric(training_args, data.problem_type, "validation" in encoded)

    set_seed(training_args.seed)
    model = build_model(data, model_args)
    logger.info("Model: %s parameters, absolute=%s relative=%s fusion=%s", f"{model.num_parameters():,}",
                model.config.absolute_position_encoding, model.config.relative_position_encoding,
                model.config.position_fusion)
    callbacks = []
    if training_args.weight_averaging_decay:
        if training_args.load_best_model_at_end:
            raise ValueError("--weight_averaging_decay ends training with the averaged weights: set --load_best_model_at_end false.")
        callbacks.append(WeightAveragingCallback(training_args.weight_averaging_decay))
    callbacks.extend(early_stopping(training_args, "validation" in encoded))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded.get("validation"),
        processing_class=processor,
        data_collator=DataCollatorWithPadding(processor),
        compute_metrics=build_compute_metrics(data.problem_type, data_args.metric_name),
        callbacks=callbacks,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()  # model + processor (processing_class) into output_dir
    train_metrics = {**train_result.metrics, "train_samples": len(encoded["train"])}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    results = {split: _evaluate(trainer, encoded[split], prefix)
               for split, prefix in (("validation", "eval"), ("test", "test")) if split in encoded}
    if trainer.is_world_process_zero():
        scored = "test" if "test" in results else "validation" if "validation" in results else None
        if write_model_card:
            write_run_card(trainer, data, data_args, train_metrics, results.get(scored, {}), scored,
                           recipe_summary(model_args, data_args, training_args, provenance))
        print(f"\nResults on {data_args.dataset_name} (validation: {provenance}; "
              f"{time.perf_counter() - started:.1f} s end to end) -> {training_args.output_dir}")
        print(format_results_table(results) if results else "No validation and no test split: nothing was scored.")
        if "test" not in results:
            print(f"No test split in {data_args.dataset_name!r}: give one with --dataset_options "
                  '\'{"data_files": {"train": ..., "test": ...}}\' or a save_to_disk DatasetDict with a `test` split.')
    return {**train_metrics, **{k: v for metrics in results.values() for k, v in metrics.items()}}


def summarise_seeds(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, sample std, min and max over seeds of every numeric metric that all seeds report."""
    keys = set.intersection(*(set(metrics) for metrics in per_seed.values()))
    summary = {}
    for key in sorted(keys):
        values = [metrics[key] for metrics in per_seed.values()]
        if all(isinstance(value, (int, float)) for value in values):
            summary[key] = {
                "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values), "n": len(values),
            }
    return summary


def run_seeds(model_args, data_args, training_args, seeds: list[int], **kwargs) -> dict[str, dict[str, float]]:
    """`run_training` once per seed into `<output_dir>/seed-<n>`, then `<output_dir>/seeds_summary.json` with the mean
    ± std of every metric; returns that summary."""
    import copy

    root = Path(training_args.output_dir)
    per_seed = {}
    for seed in seeds:
        args = copy.deepcopy(training_args)
        args.output_dir = str(root / f"seed-{seed}")
        per_seed[seed] = run_training(copy.deepcopy(model_args), copy.deepcopy(data_args), args, seed=seed, **kwargs)
    summary = summarise_seeds(per_seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "seeds_summary.json").write_text(json.dumps({"seeds": seeds, "summary": summary, "runs": per_seed}, indent=2))
    print(f"\nOver seeds {seeds} ({root / 'seeds_summary.json'}):")
    for key, stats in summary.items():
        if key.startswith(("test_", "eval_")) and not key.endswith(("_runtime", "_per_second", "_samples")):
            print(f"  {key}: {stats['mean']:.4f} ± {stats['std']:.4f} (min {stats['min']:.4f}, max {stats['max']:.4f})")
    return summary


__all__ = ["run_training", "run_seeds", "summarise_seeds"]

"""The `posattn-train` command line: a recipe, then flags.

Precedence, lowest first: the embedded default (the synthetic recipe), the recipe (`--config`), then flags (or the
`overrides` dict of programmatic callers). `--config` and `--seed` are read by a small pre-parser; everything else by
transformers' `HfArgumentParser` over the three argument groups.
"""

import argparse
import dataclasses
import importlib.util
import sys
from typing import Any

import torch
from transformers import HfArgumentParser

from .arguments import (
    ARGUMENT_CLASSES,
    DataArguments,
    ModelArguments,
    PosAttnTrainingArguments,
)
from .data_sources import default_output_dir
from .recipes import BASE_RECIPE, DEFAULT_RECIPE, bundled_names, load_recipe

TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"
# The TrainingArguments that `--help` shows; `--help_all` shows every one.
COMMON_TRAINING_FLAGS = (
    "output_dir", "overwrite_output_dir", "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "label_smoothing_factor", "per_device_train_batch_size", "keep_global_batch",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "eval_strategy", "save_strategy",
    "load_best_model_at_end", "metric_for_best_model", "early_stopping_patience", "logging_steps", "report_to",
    "torch_num_threads", "flush_denormal", "use_cpu", "bf16", "resume_from_checkpoint",
)
USAGE = "posattn-train [--config RECIPE] [--seed SEED[,SEED...]] [--FLAG VALUE ...] [-h | --help_all]"
DESCRIPTION = (
    "Train and evaluate a PosAttn classifier or regressor with the stock Trainer. With no arguments: the embedded "
    "synthetic default (no data, no network, no GPU). A recipe (--config) sets any flag below; flags override it."
)


def _pre_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--seed", default=None)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--help_all", "--help-all", action="store_true")
    return parser


def parse_seeds(text: str | None) -> list[int] | None:
    """`"3"` -> [3]; `"1,2,3"` -> [1, 2, 3]; None stays None."""
    if text is None:
        return None
    try:
        seeds = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seed must be an int or a comma-separated list of ints, got {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed must list distinct ints, got {text!r}.")
    return seeds


def help_parser(recipe: dict[str, Any], full: bool = False) -> HfArgumentParser:
    """The parser whose help `--help` prints: recipe first, then model, data and training groups."""
    parser = HfArgumentParser([], prog="posattn-train", description=DESCRIPTION, usage=USAGE)
    group = parser.add_argument_group("Recipe")
    group.add_argument("--config", metavar="RECIPE", help=f"A recipe: a JSON file, or a bundled name ({', '.join(bundled_names())}).")
    if not full:  # --help_all lists it with TrainingArguments
        group.add_argument("--seed", metavar="SEEDS", help="One seed, or several (1,2,3): one run each, then mean ± std.")
    parser._add_dataclass_arguments(ModelArguments)
    parser._add_dataclass_arguments(DataArguments)
    if full:
        parser._add_dataclass_arguments(PosAttnTrainingArguments)
    else:
        fields = {f.name: f for f in dataclasses.fields(PosAttnTrainingArguments)}
        group = parser.add_argument_group(
            "Training (the most used TrainingArguments; all of them: --help_all, or " + TRAINING_ARGUMENTS_DOCS + ")"
        )
        for name in COMMON_TRAINING_FLAGS:
            default = fields[name].default
            group.add_argument(f"--{name}", help=fields[name].metadata.get("help", "").split("\n")[0],
                               default=None if default is dataclasses.MISSING else default)
    parser.set_defaults(**{key: value for key, value in recipe.items() if key != "seed"})
    return parser


def _explicit_keys(argv: list[str]) -> set[str]:
    known = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}
    keys = set()
    for token in argv:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0].replace("-", "_")
            keys.add(key[3:] if key.startswith("no_") and key[3:] in known else key)
    return keys


def _environment_defaults(recipe: dict[str, Any], explicit: set[str]) -> None:
    """Defaults that depend on this machine, unless the recipe or a flag set them."""
    if not (torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())):
        recipe.setdefault("dataloader_pin_memory", False)  # pinning needs an accelerator
        # Without `use_cpu`, TrainingArguments does not set up torch.distributed on a machine without a GPU: under
        # `torchrun --nproc_per_node 2` each process would train alone (world size 1). With it: gloo DDP.
        recipe.setdefault("use_cpu", True)
    if "tensorboard" in (recipe.get("report_to") or []) and importlib.util.find_spec("tensorboard") is None:
        if "report_to" not in explicit:
            recipe["report_to"] = [name for name in recipe["report_to"] if name != "tensorboard"] or "none"


def parse_args(argv: list[str] | None = None, overrides: dict[str, Any] | None = None):
    """Parse `argv` (default `sys.argv[1:]`) and `overrides` into (model, data, training) arguments and the seeds.

    Returns `(model_args, data_args, training_args, seeds)`; `seeds` is None unless `--seed` (or `overrides["seed"]`)
    listed several. Prints help and exits on `--help` / `--help_all`.
    """
    known, rest = _pre_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    # with --config, the recipe is the base plus its own keys: the embedded default's task choices do not apply
    recipe = dict(BASE_RECIPE if known.config else DEFAULT_RECIPE)
    from_recipe: dict[str, Any] = {}
    for path in known.config:
        from_recipe.update(load_recipe(path))
    recipe.update(from_recipe)
    if known.help or known.help_all:
        help_parser(recipe, full=known.help_all).print_help()
        sys.exit(0)
    overrides = dict(overrides or {})
    explicit = _explicit_keys(rest) | set(overrides)
    seeds = parse_seeds(known.seed if known.seed is not None else overrides.pop("seed", None))
    # A recipe's loader options belong to the recipe's dataset: another dataset starts without them.
    new_dataset = overrides.get("dataset_name") or next(
        (rest[i + 1] for i, token in enumerate(rest[:-1]) if token == "--dataset_name"), None
    )
    if new_dataset is not None and new_dataset != recipe.get("dataset_name") and "dataset_options" not in explicit:
        recipe["dataset_options"] = None
    recipe.update(overrides)
    unknown = sorted(set(recipe) - {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"Unknown recipe/override key(s) {unknown}: not a field of {[c.__name__ for c in ARGUMENT_CLASSES]}.")
    _environment_defaults(recipe, explicit | set(from_recipe))
    if seeds:
        recipe["seed"] = seeds[0]
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.set_defaults(**recipe)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False)
    if "output_dir" not in explicit and recipe.get("output_dir") is None:
        training_args.output_dir = default_output_dir(data_args.dataset_name)
    return model_args, data_args, training_args, (seeds if seeds and len(seeds) > 1 else None)


def main(argv: list[str] | None = None) -> int:
    """`posattn-train` (and `python scripts/train.py`); the exit status of the console script."""
    from .run import run_seeds, run_training

    model_args, data_args, training_args, seeds = parse_args(argv)
    if seeds:
        run_seeds(model_args, data_args, training_args, seeds)
    else:
        run_training(model_args, data_args, training_args)
    return 0


__all__ = ["main", "parse_args", "parse_seeds", "help_parser"]

#!/usr/bin/env python
"""Ablation: a grid of positional encodings x fusion x seeds on a dataset recipe, with a paired test against a baseline.

    python scripts/ablate.py --recipe configuration/ablation_natops.json
    python scripts/ablate.py --recipe configuration/ablation_natops_multirate.json --seeds 5 --jobs 2
    python scripts/ablate.py --recipe configuration/ablation_av_digits.json --seeds 3

Writes into `--output-dir` (default `docs/results/<study>`):
- `runs.csv`: one row per (configuration, seed): the test metric, the final training loss, the wall time;
- `summary.md`: mean +- std per configuration, and a paired t-test (over seeds) of each against the recipe's baseline,
  with the caption stating the shared tuning budget;
- `summary.png`: every seed's score per configuration, with the mean;
- `summary.json`: the same numbers, the recipe, the machine and the wall time.

Every configuration gets the same budget: the recipe's single training setup (epochs, learning rate, schedule, model
size), chosen once for all, no per-configuration tuning; each (configuration, seed) trains once and is scored on the
test split at the end of training (no checkpoint selection on the test split). Seeds set the initialisation, dropout and
data order; seed s of every configuration shares the data order, which is what the paired test pairs.

The recipe's `dataset` block names any dataset `posattn-train` reads (`name`: a built-in loader, a local file or a
save_to_disk folder; `options`; `modalities` for non-built-in data). A grid entry holds encoding settings, and optionally `name`, `model: "seed_reference"`, `model_overrides` (other config
fields) and `dataset_options` (merged into the recipe's loader options).

A recipe may ask for follow-up configurations chosen from the first stage's results (`"expand"`):
`best_absolute_fusions: k` reruns the k best absolute encodings (under `add`) with `concat` and `gated`;
`best_combination: true` adds the best absolute with the best relative encoding.
"""

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ENCODING_KEYS = ("absolute_position_encoding", "relative_position_encoding", "position_fusion")


def configuration_name(settings: dict) -> str:
    """`sinusoidal`, `time_rope`, `dynamic+alibi`, `multiscale [gated]`: absolute+relative, fusion when not `add`."""
    if settings.get("name"):
        return settings["name"]
    absolute = settings.get("absolute_position_encoding", "sinusoidal")
    relative = settings.get("relative_position_encoding", "none")
    name = relative if absolute == "none" and relative != "none" else "+".join(p for p in (absolute, relative) if p != "none") or "none"
    fusion = settings.get("position_fusion", "add")
    return name if fusion == "add" or absolute == "none" else f"{name} [{fusion}]"


# ---------------------------------------------------------------------------------------------------------------------
# One run (in a worker process)
# ---------------------------------------------------------------------------------------------------------------------

_DATA_CACHE: dict = {}


def _prepared_data(dataset_name: str, options: dict, modalities: dict | None = None):
    """Load (a built-in loader, local files or a save_to_disk folder, as `posattn-train` does), fit the processor on
    train, and encode: once per worker and dataset variant."""
    key = json.dumps([dataset_name, options, modalities], sort_keys=True)
    if key not in _DATA_CACHE:
        from modeling_posattn.toolkit.arguments import DataArguments
        from modeling_posattn.toolkit.builders import build_processor, encode_splits
        from modeling_posattn.toolkit.data_sources import load_data

        data = load_data(DataArguments(dataset_name=dataset_name, dataset_options=options, modalities=modalities))
        processor = build_processor(data, train=data.dataset["train"])
        _DATA_CACHE[key] = (data, processor, encode_splits(dict(data.dataset), processor))
    return _DATA_CACHE[key]


def run_one(recipe: dict, settings: dict, seed: int, output_root: str) -> dict:
    """Train one configuration with one seed under the recipe's shared budget; return its test score."""
    import torch

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from modeling_posattn import PosAttnConfig, PosAttnForSequenceClassification
    from modeling_posattn.toolkit.seed_baseline import SeedReferenceForSequenceClassification

    torch.set_num_threads(int(os.environ.get("POSATTN_ABLATION_THREADS", "1")))
    started = time.perf_counter()
    options = {**recipe["dataset"].get("options", {}), **settings.get("dataset_options", {})}
    data, processor, encoded = _prepared_data(recipe["dataset"]["name"], options, recipe["dataset"].get("modalities"))

    set_seed(seed)
    model_settings = {**recipe["model"], **settings.get("model_overrides", {}),
                      **{key: settings[key] for key in ENCODING_KEYS if key in settings}}
    config = PosAttnConfig(modalities=data.modalities, num_labels=data.num_labels, problem_type=data.problem_type,
                           attn_implementation="sdpa", **model_settings)
    model_class = SeedReferenceForSequenceClassification if settings.get("model") == "seed_reference" else PosAttnForSequenceClassification
    model = model_class(config)

    run_dir = Path(output_root) / "runs" / f"{configuration_name(settings).replace(' ', '_')}-seed{seed}"
    args = TrainingArguments(
        output_dir=str(run_dir),
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        **recipe["training"],
    )
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], data_collator=DataCollatorWithPadding(processor))
    train_output = trainer.train()
    prediction = trainer.predict(encoded["test"])
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    if data.problem_type == "regression":
        score = -float(np.mean(np.abs(logits.reshape(-1) - prediction.label_ids.reshape(-1))))
    else:
        score = float(np.mean(logits.argmax(-1) == prediction.label_ids))
    return {
        "configuration": configuration_name(settings),
        "seed": seed,
        "score": score,
        "train_loss": float(train_output.training_loss),
        "seconds": time.perf_counter() - started,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Statistics and reporting
# ---------------------------------------------------------------------------------------------------------------------


def quiet_worker() -> None:
    """Pool initializer: keep the workers' transformers logging to errors (set per process, never in the caller's)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def paired_test(scores: dict[int, float], baseline: dict[int, float]) -> dict:
    """Paired t-test over the seeds both have: mean difference, its 95% confidence interval and the two-sided p."""
    from scipy import stats

    seeds = sorted(set(scores) & set(baseline))
    differences = np.array([scores[seed] - baseline[seed] for seed in seeds])
    result = {"n": len(seeds), "difference": float(differences.mean()) if len(seeds) else float("nan")}
    if len(seeds) < 2 or np.allclose(differences, differences[0]):
        # identical differences on every seed: the t statistic is undefined, so no p-value is claimed
        result.update(ci_low=result["difference"], ci_high=result["difference"], p=float("nan"))
        return result
    half_width = stats.t.ppf(0.975, len(seeds) - 1) * differences.std(ddof=1) / math.sqrt(len(seeds))
    result.update(ci_low=result["difference"] - half_width, ci_high=result["difference"] + half_width,
                  p=float(stats.ttest_rel([scores[s] for s in seeds], [baseline[s] for s in seeds]).pvalue))
    return result


def summarise(rows: list[dict], recipe: dict, metric: str, wall_seconds: float, machine: str) -> tuple[str, list[dict]]:
    by_configuration: dict[str, dict[int, float]] = {}
    for row in rows:
        by_configuration.setdefault(row["configuration"], {})[row["seed"]] = row["score"]
    baseline_name = recipe["baseline"]
    baseline = by_configuration.get(baseline_name, {})
    summary = []
    for name, scores in by_configuration.items():
        values = np.array(list(scores.values()))
        entry = {"configuration": name, "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                 "n": len(values), "min": float(values.min()), "max": float(values.max())}
        if name != baseline_name and baseline:
            entry["vs_baseline"] = paired_test(scores, baseline)
        summary.append(entry)
    summary.sort(key=lambda entry: -entry["mean"])
    training = recipe["training"]
    caption = (
        f"**{recipe['study']}**: test {metric}, mean ± std over seeds. Same budget for every configuration, no "
        f"per-configuration tuning: {training.get('num_train_epochs')} epochs, lr {training.get('learning_rate')}, "
        f"batch {training.get('per_device_train_batch_size')}, schedule {training.get('lr_scheduler_type', 'linear')}, "
        f"model {json.dumps(recipe['model'])}; scored once at the end of training. Paired t-test over seeds against the "
        f"baseline `{baseline_name}` (difference, 95% CI, two-sided p). Machine: {machine}. Wall time {wall_seconds / 60:.1f} min."
    )
    lines = [caption, "", f"| configuration | {metric} mean ± std | n | min–max | Δ vs baseline [95% CI] | p |", "|---|---:|---:|---:|---:|---:|"]
    for entry in summary:
        test = entry.get("vs_baseline")
        delta = "baseline" if entry["configuration"] == baseline_name else (
            f"{test['difference']:+.3f} [{test['ci_low']:+.3f}, {test['ci_high']:+.3f}]" if test else "–")
        p_value = f"{test['p']:.3f}" if test and not math.isnan(test["p"]) else "–"
        lines.append(f"| {entry['configuration']} | {entry['mean']:.3f} ± {entry['std']:.3f} | {entry['n']} | "
                     f"{entry['min']:.3f}–{entry['max']:.3f} | {delta} | {p_value} |")
    return "\n".join(lines) + "\n", summary


def plot(summary: list[dict], rows: list[dict], metric: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [entry["configuration"] for entry in summary][::-1]
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    for index, name in enumerate(names):
        scores = [row["score"] for row in rows if row["configuration"] == name]
        axis.scatter(scores, [index] * len(scores), color="tab:blue", alpha=0.6, s=18)
        axis.plot([np.mean(scores)] * 2, [index - 0.3, index + 0.3], color="black", lw=2)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel(f"test {metric} (dots: seeds; bar: mean)")
    axis.set_title(title, fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def expand(recipe: dict, summary: list[dict], done: set[str]) -> list[dict]:
    """Follow-up configurations chosen from the first stage (see module docstring)."""
    rules, grid = recipe.get("expand", {}), {configuration_name(s): s for s in recipe["grid"]}
    ranked = [grid[entry["configuration"]] for entry in summary if entry["configuration"] in grid]
    absolute = [s for s in ranked if s.get("relative_position_encoding", "none") == "none" and s.get("position_fusion", "add") == "add"
                and s.get("absolute_position_encoding", "sinusoidal") != "none" and s.get("model") != "seed_reference"]
    relative = [s for s in ranked if s.get("relative_position_encoding", "none") != "none" and s.get("absolute_position_encoding") == "none"]
    extra = []
    for settings in absolute[: rules.get("best_absolute_fusions", 0)]:
        for fusion in ("concat", "gated"):
            extra.append({"absolute_position_encoding": settings["absolute_position_encoding"], "position_fusion": fusion})
    if rules.get("best_combination") and absolute and relative:
        extra.append({"absolute_position_encoding": absolute[0]["absolute_position_encoding"],
                      "relative_position_encoding": relative[0]["relative_position_encoding"]})
    return [settings for settings in extra if configuration_name(settings) not in done]


def machine_description() -> str:
    import torch

    cpu = platform.processor() or "CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{cpu}, {os.cpu_count()} cores, CPU only (torch {torch.__version__})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, help="JSON recipe in configuration/")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the recipe's)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel training processes")
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: the whole grid)")
    parser.add_argument("--output-dir", help="default: docs/results/<study>")
    parser.add_argument("--resume", action="store_true", help="keep runs already in runs.csv")
    args = parser.parse_args()

    recipe = json.loads(Path(args.recipe).read_text())
    seeds = list(range(args.seeds or recipe.get("seeds", 5)))
    output_dir = Path(args.output_dir or f"docs/results/{recipe['study']}")
    output_dir.mkdir(parents=True, exist_ok=True)
    metric = recipe.get("metric", "accuracy")
    runs_path = output_dir / "runs.csv"
    rows = []
    if args.resume and runs_path.exists():
        with open(runs_path) as handle:
            rows = [{**row, "seed": int(row["seed"]), "score": float(row["score"]), "train_loss": float(row["train_loss"]),
                     "seconds": float(row["seconds"]), "parameters": int(row["parameters"])} for row in csv.DictReader(handle)]
    started = time.perf_counter()

    def write_outputs():
        with open(runs_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["configuration", "seed", "score", "train_loss", "seconds", "parameters"])
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda row: (row["configuration"], row["seed"])))
        table, summary = summarise(rows, recipe, metric, time.perf_counter() - started, machine)
        (output_dir / "summary.md").write_text(table)
        (output_dir / "summary.json").write_text(json.dumps({"recipe": recipe, "machine": machine, "command": " ".join(sys.argv),
                                                             "wall_seconds": time.perf_counter() - started, "summary": summary}, indent=2) + "\n")
        plot(summary, rows, metric, recipe["study"], output_dir / "summary.png")
        return table, summary

    machine = machine_description()
    stages = [[s for s in recipe["grid"] if not args.only or configuration_name(s) in args.only]]
    expanded = bool(args.only)
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=quiet_worker) as pool:
        while stages:
            stage = stages.pop(0)
            done = {(row["configuration"], row["seed"]) for row in rows}
            jobs = [(settings, seed) for settings in stage for seed in seeds if (configuration_name(settings), seed) not in done]
            futures = [pool.submit(run_one, recipe, settings, seed, str(output_dir)) for settings, seed in jobs]
            for future in futures:
                row = future.result()
                rows.append(row)
                print(f"{row['configuration']:>32} seed {row['seed']}: {metric} {row['score']:.4f} "
                      f"({row['seconds']:.0f} s)", flush=True)
                write_outputs()
            if not expanded:
                expanded = True
                follow_up = expand(recipe, write_outputs()[1], {row["configuration"] for row in rows})
                if follow_up:
                    recipe["grid"] = recipe["grid"] + follow_up
                    stages.append(follow_up)
    table, _ = write_outputs()
    print("\n" + table)
    print(f"wrote {runs_path}, {output_dir / 'summary.md'}, {output_dir / 'summary.png'}")


if __name__ == "__main__":
    main()

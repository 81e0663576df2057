#!/usr/bin/env python
"""The main job's training throughput (`python scripts/train.py`, the embedded synthetic default) against the code of
an earlier commit, with its accuracy (issue 13: training tokens/s up by at least 25% at equal accuracy).

Each round runs every variant once, back to back in a rotated order, as separate processes (`scripts/train.py` end to
end: per-epoch evaluation and checkpoints included, as a user runs it), with the round's seed:
- `before`: the code at `--baseline-ref` (a temporary detached worktree) with its own default recipe;
- `before's model`: this checkout, the model of `before` (`unit_scale_embeddings` off, initializer_range 0.1), random
  batches as before; `..., grouped`: the same with length-grouped batches (`train_sampling_strategy
  group_by_length`), which is the default recipe now;
- `unit-scale model` (`unit_scale_embeddings` on, initializer_range 0.02: the default recipe between issue 10 and this
  benchmark), random or grouped batches.
Training tokens/s = the training split's real (unpadded) tokens x epochs / Trainer's `train_runtime`. Ratios are taken
within a round (the machine's load drifts alike for all variants) and reported as median [min-max].

    PYTHONPATH=$PWD python scripts/benchmark_main_job.py --seeds 1,2,3
    PYTHONPATH=$PWD python scripts/benchmark_main_job.py --seeds 4,5 --variants "unit-scale model" --resume
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BEFORE_MODEL = ["--config_overrides", '{"unit_scale_embeddings": false}', "--initializer_range", "0.1"]
UNIT_SCALE_MODEL = ["--config_overrides", '{"unit_scale_embeddings": true}', "--initializer_range", "0.02"]
RANDOM, GROUPED = ["--train_sampling_strategy", "random"], ["--train_sampling_strategy", "group_by_length"]
VARIANTS = {
    "before": None,  # the baseline's own code and default recipe, in a worktree
    "before's model": BEFORE_MODEL + RANDOM,
    "before's model, grouped": BEFORE_MODEL + GROUPED,  # configuration/synthetic.json since this benchmark
    "unit-scale model": UNIT_SCALE_MODEL + RANDOM,  # configuration/synthetic.json from issue 10 until this benchmark
    "unit-scale model, grouped": UNIT_SCALE_MODEL + GROUPED,
}


def training_tokens_per_epoch() -> int:
    """Real tokens in the default training split: every modality's frames or token ids, no padding."""
    sys.path.insert(0, str(ROOT))
    from modeling_posattn.toolkit.data.synthetic import load_synthetic
    from modeling_posattn.toolkit.recipes import DEFAULT_RECIPE

    data = load_synthetic(**DEFAULT_RECIPE["dataset_options"])
    train = data.dataset["train"]
    return int(sum(len(value) for name in data.modalities for value in train[name] if value is not None))


def run(variant: str, arguments: list[str], cwd: Path, seed: int, output_dir: Path) -> dict:
    command = [sys.executable, "scripts/train.py", "--seed", str(seed), "--output_dir", str(output_dir), *arguments]
    environment = dict(os.environ, PYTHONPATH=str(cwd), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{variant} (seed {seed}) failed:\n{completed.stderr[-3000:]}")
    results = json.loads((output_dir / "all_results.json").read_text())
    return {"variant": variant, "seed": seed, "train_runtime": results["train_runtime"], "epochs": results["epoch"],
            "validation_accuracy": results.get("eval_accuracy"), "test_accuracy": results["test_accuracy"],
            "wall_seconds": time.perf_counter() - started}


def paired_ratio(runs: dict, reference: dict) -> str:
    """Median [min-max] of the per-seed ratios of tokens/s, over the seeds both variants ran."""
    ratios = np.array([runs[s]["tokens_per_second"] / reference[s]["tokens_per_second"] for s in runs if s in reference])
    return f"{np.median(ratios):.2f}x [{ratios.min():.2f}-{ratios.max():.2f}]" if len(ratios) else "-"


def mean_std(values: np.ndarray) -> str:
    if not len(values):
        return "-"
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f} ({len(values)})"


def summarise(rows: list[dict], tokens: int, references: tuple[str, ...]) -> tuple[str, dict]:
    by_variant = {}
    for row in rows:
        row["tokens_per_second"] = tokens * row["epochs"] / row["train_runtime"]
        by_variant.setdefault(row["variant"], {})[row["seed"]] = row
    lines = ["| variant | seeds | training tokens/s, median [min-max] | "
             + " | ".join(f"vs `{name}`, median [min-max]" for name in references) + " | test accuracy, mean ± std | validation accuracy (best checkpoint) |",
             "|---|---|---|" + "---|" * len(references) + "---|---|"]
    summary = {}
    for variant in (name for name in VARIANTS if name in by_variant):
        runs = by_variant[variant]
        speed = np.array([r["tokens_per_second"] for r in runs.values()])
        accuracy = np.array([r["test_accuracy"] for r in runs.values()])
        validation = np.array([r["validation_accuracy"] for r in runs.values() if r.get("validation_accuracy") is not None])
        ratios = [paired_ratio(runs, by_variant.get(name, {})) for name in references]
        summary[variant] = {"tokens_per_second": speed.tolist(), "accuracy": accuracy.tolist(),
                            **{f"vs {name}": ratio for name, ratio in zip(references, ratios)}}
        spread = accuracy.std(ddof=1) if len(accuracy) > 1 else 0.0
        lines.append(f"| {variant} | {len(runs)} | {np.median(speed):.0f} [{speed.min():.0f}-{speed.max():.0f}] | "
                     + " | ".join(ratios) + f" | {accuracy.mean():.3f} ± {spread:.3f} | {mean_std(validation)} |")
    return "\n".join(lines) + "\n", summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref", default="04e4ba1", help="git ref of `before` (default: issue 13's measurement)")
    parser.add_argument("--seeds", default="1,2,3", help="one round per seed")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), help="default: all")
    parser.add_argument("--output-dir", default=str(ROOT / "docs/results/speed"))
    parser.add_argument("--resume", action="store_true", help="add to the runs in main_job.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tokens = training_tokens_per_epoch()
    output = Path(args.output_dir)
    record = output / "main_job.json"
    rows = json.loads(record.read_text())["runs"] if args.resume and record.exists() else []
    done = {(row["variant"], row["seed"]) for row in rows}
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline_ref], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            names = args.variants or list(VARIANTS)
            for round_index, seed in enumerate(seeds):
                order = names[round_index % len(names):] + names[:round_index % len(names)]
                for variant in [name for name in order if (name, seed) not in done]:
                    cwd, arguments = (worktree, []) if variant == "before" else (ROOT, VARIANTS[variant])
                    row = run(variant, arguments, cwd, seed, Path(scratch) / f"{variant}-{seed}".replace(" ", "_"))
                    rows.append(row)
                    print(f"seed {seed} {variant:>26}: {tokens * row['epochs'] / row['train_runtime']:.0f} tokens/s, "
                          f"accuracy {row['test_accuracy']:.4f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    table, summary = summarise(rows, tokens, ("before", "before's model"))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    output.mkdir(parents=True, exist_ok=True)
    seeds_run = sorted({row["seed"] for row in rows})
    header = (f"# Main job throughput (`python scripts/benchmark_main_job.py --seeds ... --baseline-ref {args.baseline_ref}`, "
              f"seeds {seeds_run})\n\n{tokens} real training tokens per epoch; {machine}.\n\n")
    (output / "main_job.md").write_text(header + table)
    (output / "main_job.json").write_text(json.dumps({"baseline_ref": args.baseline_ref, "tokens_per_epoch": tokens,
                                                      "machine": machine, "runs": rows, "summary": summary}, indent=2) + "\n")
    print("\n" + table)


if __name__ == "__main__":
    main()

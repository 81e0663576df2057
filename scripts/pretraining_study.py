#!/usr/bin/env python
"""Issue 11, item 4: does masked pretraining help fine-tuning? Fine-tune a recipe from scratch and from pretraining
checkpoints, several seeds each, then a table with mean ± std and paired t-tests against scratch, and the pretraining
loss curves.

    python scripts/pretrain.py --config pretrain_natops --output_dir outputs/natops-pretrain-time_aligned
    python scripts/pretrain.py --config pretrain_natops --mask_mode per_modality --output_dir outputs/natops-pretrain-per_modality
    python scripts/pretraining_study.py --recipe natops --seeds 1,2,3,4,5 \
        --checkpoint time_aligned=outputs/natops-pretrain-time_aligned \
        --checkpoint per_modality=outputs/natops-pretrain-per_modality --out docs/results/pretraining

Each fine-tuning run is `scripts/train.py --config RECIPE --seed S [--model_name_or_path CKPT]` (the recipe unchanged),
run in `--jobs` processes at a time. The checkpoints must be pretrained on the recipe's training split only (the
pretraining recipes never read the test split).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fine_tune(recipe: str, seed: int, checkpoint: str | None, output_dir: Path) -> dict:
    if (output_dir / "test_results.json").is_file():  # resumable: a finished run is read back
        return json.loads((output_dir / "test_results.json").read_text())
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--config", recipe, "--seed", str(seed),
               "--output_dir", str(output_dir), "--overwrite_output_dir", "true", "--report_to", "none",
               "--disable_tqdm", "true"]
    if checkpoint:
        command += ["--model_name_or_path", checkpoint]
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "log.txt", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return json.loads((output_dir / "test_results.json").read_text())


def paired_test(values: list[float], baseline: list[float]) -> str:
    from scipy import stats

    differences = [a - b for a, b in zip(values, baseline)]
    mean = statistics.fmean(differences)
    if len(differences) < 2 or statistics.stdev(differences) == 0:
        return f"{mean:+.3f} (no spread)"
    interval = stats.t.interval(0.95, len(differences) - 1, loc=mean, scale=stats.sem(differences))
    p = stats.ttest_rel(values, baseline).pvalue
    return f"{mean:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}], p = {p:.3f}"


def plot_curves(checkpoints: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(checkpoints), figsize=(5 * len(checkpoints), 3.5), squeeze=False)
    for axis, (name, folder) in zip(axes[0], checkpoints.items()):
        history = json.loads((Path(folder) / "trainer_state.json").read_text())["log_history"]
        train = [(entry["epoch"], entry["loss"]) for entry in history if "loss" in entry]
        valid = [(entry["epoch"], entry["eval_loss"]) for entry in history if "eval_loss" in entry]
        axis.plot(*zip(*train), label="train loss")
        axis.plot(*zip(*valid), label="validation loss (fixed masks)")
        axis.set_title(f"pretraining, {name} masking")
        axis.set_xlabel("epoch")
        axis.set_ylabel("masked reconstruction loss")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="natops")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--runs", default="outputs/pretraining_study", help="where the fine-tuning runs go")
    parser.add_argument("--out", default="docs/results/pretraining", help="where the summary and the plot go")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    conditions = {"scratch": None, **{f"from {name}": folder for name, folder in checkpoints.items()}}
    started = time.perf_counter()
    jobs = [(name, seed) for name in conditions for seed in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(fine_tune, args.recipe, job[1], conditions[job[0]],
                             Path(args.runs) / job[0].replace(" ", "_") / f"seed-{job[1]}")
            for job in jobs
        }
        results = {job: future.result() for job, future in futures.items()}
    wall = time.perf_counter() - started
    accuracy = {name: [results[(name, seed)]["test_accuracy"] for seed in seeds] for name in conditions}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"**{args.recipe}**: test accuracy over seeds {seeds}, fine-tuned with `configuration/{args.recipe}.json` "
        "unchanged, from scratch or from a checkpoint pretrained on the training split only. Difference to scratch: "
        "paired over seeds, mean [95% CI], two-sided paired t-test.",
        "",
        "| start | mean ± std | min | max | vs scratch |",
        "|---|---|---|---|---|",
    ]
    for name, values in accuracy.items():
        versus = "" if name == "scratch" else paired_test(values, accuracy["scratch"])
        lines.append(f"| {name} | {statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f} | {min(values):.3f} | "
                     f"{max(values):.3f} | {versus} |")
    lines.append("")
    lines.append(f"Fine-tuning wall time: {wall / 60:.1f} min for {len(jobs)} runs, {args.jobs} at a time.")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"recipe": args.recipe, "seeds": seeds, "checkpoints": checkpoints,
                                                  "test_accuracy": accuracy, "wall_seconds": wall}, indent=2))
    if checkpoints:
        plot_curves(checkpoints, out / "pretraining_loss.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

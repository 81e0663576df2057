#!/usr/bin/env python
"""Ablation: a grid of positional encodings x seeds, each trained with one `posattn-train` recipe left unchanged, with
paired tests against a baseline and Holm's correction for the many comparisons.

    python scripts/ablate.py --study configuration/ablation_natops.json --jobs 2
    python scripts/ablate.py --study configuration/ablation_natops_multirate.json --seeds 5 --jobs 2
    python scripts/ablate.py --study configuration/ablation_natops.json --seeds 10 --only dynamic sinusoidal --resume
    python scripts/ablate.py --study configuration/ablation_av_digits.json --compare "learned [concat]:learned"

A study file names a training recipe (`"recipe": "uea"`: `configuration/uea.json`, or a path) and the grid. Every
(configuration, seed) is exactly `posattn-train --config RECIPE --seed S` with the configuration's three encoding
fields set (absolute, default `sinusoidal`; relative, default `none`; fusion, default `add`), plus the study's shared
`arguments` (e.g. another dataset) and the entry's own `arguments`: everything else (model, stem, augmentation, weight
averaging, budget, the test split scored once at the end) is the recipe's, the same for every encoding.

Writes into `--output-dir` (default `docs/results/<study>`):
- `runs.csv`: one row per (configuration, seed): the test metric, the final training loss, the wall time, the machine
  (a resumed study may span machines: the caption then counts the runs of each);
- `summary.md`: mean ± std per configuration, the paired difference to the baseline over seeds with its 95% CI, the
  raw two-sided paired t-test p and Holm's step-down adjusted p over all the study's comparisons;
- `summary.png`: every seed's score per configuration, with the mean;
- `summary.json`: the same numbers, the study, the runs per machine and the wall time.
The trained runs (weights, logs) go to `--runs-dir` (default `outputs/ablation/<study>`), never into docs.

Seeds are 1..N, the seeds `posattn-train --seed 1,2,...` uses, so the recipe's own configuration reproduces its
`--seed` runs. Seed s sets the initialisation, dropout, augmentation draws and data order of every configuration alike:
the paired test pairs them.

A study may ask for follow-up configurations chosen from the first stage's results (`"expand"`):
`best_absolute_fusions: k` reruns the k best absolute encodings (under `add`) with `concat` and `gated`;
`best_combination: true` adds the best absolute with the best relative encoding. The follow-up stage is chosen once:
a resumed study that already has follow-up runs (e.g. `--seeds 10 --resume`) keeps those configurations rather than
re-choosing them on the extra seeds.
"""

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ENCODING_DEFAULTS = {"absolute_position_encoding": "sinusoidal", "relative_position_encoding": "none", "position_fusion": "add"}
RUN_FIELDS = ["configuration", "seed", "score", "train_loss", "seconds", "parameters", "machine"]


def configuration_name(settings: dict) -> str:
    """`sinusoidal`, `time_rope`, `dynamic+alibi`, `multiscale [gated]`: absolute+relative, fusion when not `add`."""
    if settings.get("name"):
        return settings["name"]
    absolute, relative, fusion = (settings.get(key, default) for key, default in ENCODING_DEFAULTS.items())
    name = relative if absolute == "none" and relative != "none" else "+".join(p for p in (absolute, relative) if p != "none") or "none"
    return name if fusion == "add" or absolute == "none" else f"{name} [{fusion}]"


def run_overrides(study: dict, settings: dict, seed: int, run_dir: Path) -> dict:
    """The `posattn-train` overrides of one run: the study's and the entry's arguments, then all three encoding
    fields (so that the recipe's own encoding never leaks into another configuration)."""
    return {
        **study.get("arguments", {}),
        **settings.get("arguments", {}),
        **{key: settings.get(key, default) for key, default in ENCODING_DEFAULTS.items()},
        "seed": seed,
        "output_dir": str(run_dir),
        "overwrite_output_dir": True,
        "report_to": "none",
        "disable_tqdm": True,
    }


# ---------------------------------------------------------------------------------------------------------------------
# One run (in a worker process)
# ---------------------------------------------------------------------------------------------------------------------


def count_parameters(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())


def run_one(study: dict, settings: dict, seed: int, runs_root: str) -> dict:
    """Train one configuration with one seed under the study's recipe; return its test score."""
    from modeling_posattn.toolkit.run import run_training

    started = time.perf_counter()
    name = configuration_name(settings)
    run_dir = Path(runs_root) / f"{name.replace(' ', '_').replace('|', '-')}-seed{seed}"
    metrics = run_training(argv=["--config", study["recipe"]], overrides=run_overrides(study, settings, seed, run_dir),
                           write_model_card=False)
    metric = study.get("metric", "accuracy")
    if f"test_{metric}" not in metrics:
        raise RuntimeError(f"{name} seed {seed}: no test_{metric} in the run's metrics {sorted(metrics)}; "
                           "the study's dataset needs a test split.")
    return {
        "configuration": name,
        "seed": seed,
        "score": float(metrics[f"test_{metric}"]),
        "train_loss": float(metrics["train_loss"]),
        "seconds": time.perf_counter() - started,
        "parameters": count_parameters(run_dir),
        "machine": machine_description(),
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


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's (1979) step-down adjustment, controlling the family-wise error rate over all the given tests: with the m
    p-values sorted ascending, $\\tilde p_{(i)} = \\max_{j \\le i} \\min(1, (m - j + 1) p_{(j)})$. NaN p-values (no
    test possible) are left out of the family and stay NaN."""
    tested = sorted((p, name) for name, p in p_values.items() if not math.isnan(p))
    adjusted, running = {name: float("nan") for name in p_values}, 0.0
    for rank, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[name] = running
    return adjusted


def format_p(p: float) -> str:
    """Three decimals; `<0.001` below that (a t-test's tail is no more exact), `–` where no test was possible."""
    return "–" if math.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def scores_by_configuration(rows: list[dict]) -> dict[str, dict[int, float]]:
    """{configuration: {seed: score}} from runs.csv rows."""
    by_configuration: dict[str, dict[int, float]] = {}
    for row in rows:
        by_configuration.setdefault(row["configuration"], {})[row["seed"]] = row["score"]
    return by_configuration


def format_difference(test: dict) -> str:
    return f"{test['difference']:+.3f} [{test['ci_low']:+.3f}, {test['ci_high']:+.3f}]"


def machines_of(rows: list[dict]) -> str:
    """The machine the runs trained on, or each machine with its number of runs when a study spans several."""
    counts = Counter(row["machine"] for row in rows)
    if len(counts) == 1:
        return f"Machine: {next(iter(counts))}"
    return "Machines: " + "; ".join(f"{machine} ({count} runs)" for machine, count in counts.most_common())


def summarise(rows: list[dict], study: dict, metric: str, wall_seconds: float | None,
              note: str = "") -> tuple[str, list[dict]]:
    by_configuration = scores_by_configuration(rows)
    baseline_name = study["baseline"]
    baseline = by_configuration.get(baseline_name, {})
    summary = []
    for name, scores in by_configuration.items():
        values = np.array(list(scores.values()))
        seconds = [row["seconds"] for row in rows if row["configuration"] == name]
        entry = {"configuration": name, "mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                 "n": len(values), "min": float(values.min()), "max": float(values.max()),
                 "median_seconds": float(np.median(seconds))}
        if name != baseline_name and baseline:
            entry["vs_baseline"] = paired_test(scores, baseline)
        summary.append(entry)
    adjusted = holm({entry["configuration"]: entry["vs_baseline"]["p"] for entry in summary if "vs_baseline" in entry})
    for entry in summary:
        if "vs_baseline" in entry:
            entry["vs_baseline"]["p_holm"] = adjusted[entry["configuration"]]
    summary.sort(key=lambda entry: -entry["mean"])
    caption = (
        f"**{study['study']}**: test {metric}, mean ± std over seeds. Every configuration is `posattn-train --config "
        f"{study['recipe']}` unchanged except its encoding fields"
        + (f" (and {json.dumps(study['arguments'])})" if study.get("arguments") else "")
        + f"; scored once on the test split at the end of training. Δ: paired over seeds against the baseline "
        f"`{baseline_name}`, mean [95% CI]; p: two-sided paired t-test; p (Holm): adjusted over the "
        f"{len(adjusted)} comparisons of this table. {machines_of(rows)}. "
        + (f"Wall time {wall_seconds / 60:.1f} min." if wall_seconds is not None else
           f"Wall time not separable (rows taken from a mixed study); the runs took {sum(r['seconds'] for r in rows) / 60:.1f} min summed.")
        + (f" {note}" if note else "")
    )
    lines = [caption, "", f"| configuration | {metric} mean ± std | n | min–max | Δ vs baseline [95% CI] | p | p (Holm) | s/run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in summary:
        test = entry.get("vs_baseline")
        delta = "baseline" if entry["configuration"] == baseline_name else (
            format_difference(test) if test else "–")
        p_value, p_holm = (format_p(test[key]) if test else "–" for key in ("p", "p_holm"))
        lines.append(f"| {entry['configuration']} | {entry['mean']:.3f} ± {entry['std']:.3f} | {entry['n']} | "
                     f"{entry['min']:.3f}–{entry['max']:.3f} | {delta} | {p_value} | {p_holm} | {entry['median_seconds']:.0f} |")
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


def expand(study: dict, summary: list[dict]) -> list[dict]:
    """Follow-up configurations chosen from the first stage (see module docstring), less those the grid already has.

    Configurations with runs are kept: the job list skips (configuration, seed) pairs already done, so that a resumed
    study completes a follow-up stage that was stopped part-way."""
    rules, grid = study.get("expand", {}), {configuration_name(s): s for s in study["grid"]}
    ranked = [grid[entry["configuration"]] for entry in summary if entry["configuration"] in grid]
    absolute = [s for s in ranked if s.get("relative_position_encoding", "none") == "none" and s.get("position_fusion", "add") == "add"
                and s.get("absolute_position_encoding", "sinusoidal") != "none"]
    relative = [s for s in ranked if s.get("relative_position_encoding", "none") != "none" and s.get("absolute_position_encoding") == "none"]
    extra = []
    for settings in absolute[: rules.get("best_absolute_fusions", 0)]:
        for fusion in ("concat", "gated"):
            extra.append({"absolute_position_encoding": settings["absolute_position_encoding"], "position_fusion": fusion})
    if rules.get("best_combination") and absolute and relative:
        extra.append({"absolute_position_encoding": absolute[0]["absolute_position_encoding"],
                      "relative_position_encoding": relative[0]["relative_position_encoding"]})
    return [settings for settings in extra if configuration_name(settings) not in grid]


def follow_up_settings(name: str) -> dict:
    """The settings of a follow-up configuration from its name: `X [fusion]` or `X+Y` (the only forms `expand` makes)."""
    if name.endswith("]"):
        absolute, fusion = name[:-1].split(" [")
        return {"absolute_position_encoding": absolute, "position_fusion": fusion}
    absolute, relative = name.split("+")
    return {"absolute_position_encoding": absolute, "relative_position_encoding": relative}


def earlier_follow_up(study: dict, rows: list[dict]) -> list[dict]:
    """The follow-up configurations a resumed study already ran, in first-run order."""
    grid = {configuration_name(settings) for settings in study["grid"]}
    names = dict.fromkeys(row["configuration"] for row in rows if row["configuration"] not in grid)
    return [follow_up_settings(name) for name in names]


def compare(rows: list[dict], pairs: list[str]) -> str:
    """Paired tests between any two configurations of a finished table (`A:B` is A minus B), with Holm's correction
    over the pairs asked for: for questions the baseline column does not answer, such as a fusion against `add` on the
    same encoding. Nothing is trained."""
    scores = scores_by_configuration(rows)
    tests = {}
    for pair in pairs:
        first, _, second = pair.partition(":")
        missing = [name for name in (first, second) if name not in scores]
        if missing:
            raise SystemExit(f"--compare {pair!r}: no runs of {missing} in runs.csv (expected 'A:B' with A, B among {sorted(scores)}).")
        tests[pair] = paired_test(scores[first], scores[second])
    adjusted = holm({pair: test["p"] for pair, test in tests.items()})
    lines = ["| A:B | Δ = A - B [95% CI] | n | p | p (Holm over these) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {pair} | {format_difference(t)} | {t['n']} | {format_p(t['p'])} | {format_p(adjusted[pair])} |"
              for pair, t in tests.items()]
    return "\n".join(lines)


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


def read_runs(path: Path, machine: str = "unrecorded machine") -> list[dict]:
    """The runs of a runs.csv; `machine` for rows written before runs recorded theirs."""
    with open(path) as handle:
        return [{**row, "seed": int(row["seed"]), "score": float(row["score"]), "train_loss": float(row["train_loss"]),
                 "seconds": float(row["seconds"]), "parameters": int(row["parameters"]),
                 "machine": row.get("machine") or machine} for row in csv.DictReader(handle)]


def recorded_machine(summary_path: Path) -> str:
    """The machine a table's summary.json names: where its runs without a machine of their own trained."""
    if summary_path.exists():
        return json.loads(summary_path.read_text()).get("machine", "unrecorded machine")
    return "unrecorded machine"


def load_study(path: str) -> dict:
    study = json.loads(Path(path).read_text())
    missing = [key for key in ("study", "recipe", "baseline", "grid") if key not in study]
    if missing:
        raise SystemExit(f"{path}: a study needs {missing} (see `python scripts/ablate.py --help`).")
    names = [configuration_name(settings) for settings in study["grid"]]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: configuration names repeat in the grid: {sorted(n for n in names if names.count(n) > 1)}.")
    return study


def write_summary(output_dir: Path, study: dict, table: str, summary: list[dict], rows: list[dict], metric: str,
                  wall_seconds: float | None, command: str) -> None:
    (output_dir / "summary.md").write_text(table)
    machines = dict(Counter(row["machine"] for row in rows))
    (output_dir / "summary.json").write_text(json.dumps({"study": study, "machines": machines, "command": command,
                                                         "wall_seconds": wall_seconds, "summary": summary}, indent=2) + "\n")
    plot(summary, rows, metric, study["study"], output_dir / "summary.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="a study JSON (configuration/ablation_*.json)")
    parser.add_argument("--seeds", type=int, help="number of seeds, 1..N (default: the study's)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel training processes")
    parser.add_argument("--only", nargs="*", help="configuration names to run: grid entries, or follow-ups a resumed "
                        "study already chose (default: the whole grid, then the follow-up stage)")
    parser.add_argument("--output-dir", help="default: docs/results/<study>")
    parser.add_argument("--runs-dir", help="default: outputs/ablation/<study>")
    parser.add_argument("--resume", action="store_true", help="keep runs already in runs.csv (and add their wall time)")
    parser.add_argument("--summarise", action="store_true", help="rewrite summary.md/json/png from the output folder's "
                        "runs.csv and exit; trains nothing (e.g. after rows were split into another folder)")
    parser.add_argument("--note", default="", help="a sentence appended to the table's caption")
    parser.add_argument("--compare", nargs="+", metavar="A:B", help="print paired tests between configurations of the "
                        "study's runs.csv (A minus B, Holm over the pairs given) and exit; trains nothing")
    args = parser.parse_args()

    study = load_study(args.study)
    output_dir = Path(args.output_dir or f"docs/results/{study['study']}")
    if args.compare:
        print(compare(read_runs(output_dir / "runs.csv"), args.compare))
        return
    if args.summarise:
        summary_path = output_dir / "summary.json"
        wall = json.loads(summary_path.read_text()).get("wall_seconds") if summary_path.exists() else None
        rows = read_runs(output_dir / "runs.csv", recorded_machine(summary_path))
        metric = study.get("metric", "accuracy")
        table, summary = summarise(rows, study, metric, wall, args.note)
        write_summary(output_dir, study, table, summary, rows, metric, wall, " ".join(sys.argv))
        print(table)
        return
    seeds = list(range(1, (args.seeds or study.get("seeds", 5)) + 1))
    runs_dir = Path(args.runs_dir or f"outputs/ablation/{study['study']}")
    output_dir.mkdir(parents=True, exist_ok=True)
    metric = study.get("metric", "accuracy")
    runs_path = output_dir / "runs.csv"
    summary_path = output_dir / "summary.json"
    rows = read_runs(runs_path, recorded_machine(summary_path)) if args.resume and runs_path.exists() else []
    # A resumed study's wall time is the sum of its invocations', so that the caption stays the study's cost; a table
    # whose wall time was not separable (rows split off a mixed study: `--summarise`) stays so.
    earlier = json.loads(summary_path.read_text()).get("wall_seconds") if rows and summary_path.exists() else 0.0
    started = time.perf_counter() - (earlier or 0.0)

    def write_outputs():
        with open(runs_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RUN_FIELDS)
            writer.writeheader()
            writer.writerows(sorted(rows, key=lambda row: (row["configuration"], row["seed"])))
        wall = None if earlier is None else time.perf_counter() - started
        table, summary = summarise(rows, study, metric, wall, args.note)
        write_summary(output_dir, study, table, summary, rows, metric, wall, " ".join(sys.argv))
        return table, summary

    candidates = study["grid"] + (earlier_follow_up(study, rows) if args.only else [])
    stages = [[s for s in candidates if not args.only or configuration_name(s) in args.only]]
    unknown = sorted(set(args.only or []) - {configuration_name(s) for s in candidates})
    if unknown:
        raise SystemExit(f"--only: {unknown} are neither in the grid of {args.study} nor follow-ups it already ran.")
    expanded = bool(args.only)
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=quiet_worker) as pool:
        while stages:
            stage = stages.pop(0)
            done = {(row["configuration"], row["seed"]) for row in rows}
            # Seed-major, so that a study stopped early has every configuration at the same seeds.
            jobs = [(settings, seed) for seed in seeds for settings in stage if (configuration_name(settings), seed) not in done]
            futures = [pool.submit(run_one, study, settings, seed, str(runs_dir)) for settings, seed in jobs]
            for future in futures:
                row = future.result()
                rows.append(row)
                print(f"{row['configuration']:>32} seed {row['seed']}: {metric} {row['score']:.4f} "
                      f"({row['seconds']:.0f} s)", flush=True)
                write_outputs()
            if not expanded:
                expanded = True
                follow_up = earlier_follow_up(study, rows) or expand(study, write_outputs()[1])
                if follow_up:
                    study["grid"] = study["grid"] + follow_up
                    stages.append(follow_up)
    table, _ = write_outputs()
    print("\n" + table)
    print(f"wrote {runs_path}, {output_dir / 'summary.md'}, {output_dir / 'summary.png'}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The posattn recipe side by side with what users would pick instead: MiniRocket and MultiRocket, same split.

Runs the recipe over N seeds (one `scripts/train.py` process per seed, `--jobs` at a time), then MiniRocket and
MultiRocket (aeon, `pip install -e ".[benchmark]"`) over N seeds on the same train/test rows and channels, and writes
`docs/results/quality/<dataset>.md` and `.json`: accuracy mean ± std, min-max, wall time per run, the published rows
for the dataset (NATOPS only, from ../shared/data/SOURCES.md) and the machine.

    python scripts/benchmark_quality.py                                   # NATOPS via the uea loader, 5 seeds each
    python scripts/benchmark_quality.py --dataset_options '{"path": "DIR/Name"}' --seeds 5 --jobs 2
    python scripts/benchmark_quality.py --seeds 5 --posattn_seeds 3 --num_train_epochs 100   # extra flags -> train.py
    python scripts/benchmark_quality.py --config configuration/natops.json --dataset_name natops --skip_rockets

The rockets see exactly the posattn run's data: the loader's full `train` split (also when a recipe carves a validation
split from it) and its `test` split, with the channels of every modality (in modality order), as float32. aeon 1.6's
rocket classifiers need equal lengths: variable-length series are padded to the longest series of train and test by
repeating their last value (stated in the report). Rocket times exclude numba's one-off compilation (a warm-up fit on a
few rows is run first and reported separately).
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install

ROCKETS = ("MiniRocket", "MultiRocket")

# Published accuracy on the official split, with sources (../shared/data/SOURCES.md; TSC_NOTES.md for the protocols).
PUBLISHED = {
    "natops": [
        ("Disjoint-CNN", 0.972, "Foumani et al. 2021, results CSV in Navidfoumani/Disjoint-CNN (likely a mean over 30 resamples)"),
        ("TST (transformer, learned PE)", 0.950, "ConvTran paper (Foumani et al. 2023), Table 1"),
        ("ConvTran (tAPE + eRPE)", 0.939, "ConvTran paper, Table 1"),
        ("MLSTM-FCN", 0.939, "ConvTran paper, Table 1"),
        ("DisJoint-CNN (as reported by ConvTran)", 0.928, "ConvTran paper, Table 1"),
        ("InceptionTime", 0.917, "ConvTran paper, Table 1"),
        ("MultiRocket", 0.917, "ConvTran paper, Table 1"),
        ("ResNet", 0.894, "ConvTran paper, Table 1"),
        ("ROCKET", 0.885, "multivariate bake-off figures via the Disjoint-CNN results CSV"),
        ("FCN", 0.878, "ConvTran paper, Table 1"),
    ],
}


def import_aeon():
    """aeon's rocket classifiers, or a clear error: aeon is a benchmark extra, never a runtime dependency."""
    try:
        import aeon
        from aeon.classification.convolution_based import MiniRocketClassifier, MultiRocketClassifier
    except ImportError as error:
        raise ImportError(
            f"The rocket baselines need aeon ({error}). Install the benchmark extra: pip install -e \".[benchmark]\" "
            "(aeon==1.6.0; it pins numpy<2.4, so a separate environment may be wiser), or pass --skip_rockets."
        ) from None
    return aeon.__version__, {"MiniRocket": MiniRocketClassifier, "MultiRocket": MultiRocketClassifier}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Unknown flags are passed to scripts/train.py.")
    parser.add_argument("--config", default="configuration/uea.json", help="The posattn recipe (default: configuration/uea.json).")
    parser.add_argument("--dataset_name", default=None, help="Overrides the recipe's dataset_name (e.g. uea).")
    parser.add_argument("--dataset_options", default=None, help="Loader options as JSON (uea: path, modalities, sampling_rate).")
    parser.add_argument("--seeds", type=int, default=5, help="Seeds 1..N for every method (default 5).")
    parser.add_argument("--posattn_seeds", type=int, default=None, help="Seeds for the posattn recipe (default: --seeds).")
    parser.add_argument("--jobs", type=int, default=1, help="posattn runs at a time (one thread each).")
    parser.add_argument("--skip_rockets", action="store_true")
    parser.add_argument("--skip_posattn", action="store_true")
    parser.add_argument("--name", default=None, help="Dataset name in the report and file names (default: from the loader).")
    parser.add_argument("--output_dir", default=str(ROOT / "docs" / "results" / "quality"), help="Where <name>.md/.json go.")
    parser.add_argument("--work_dir", default=str(ROOT / "outputs" / "benchmark_quality"), help="posattn run folders.")
    args, train_flags = parser.parse_known_args(argv)
    if args.seeds < 1 or (args.posattn_seeds is not None and args.posattn_seeds < 1) or args.jobs < 1:
        parser.error("--seeds, --posattn_seeds and --jobs must be positive.")
    return args, train_flags


def recipe_argv(args) -> list[str]:
    argv = ["--config", args.config]
    if args.dataset_name:
        argv += ["--dataset_name", args.dataset_name]
    if args.dataset_options:
        argv += ["--dataset_options", args.dataset_options]
    return argv


# ---------------------------------------------------------------------------------------------------------------------
# the data, as the posattn run sees it
# ---------------------------------------------------------------------------------------------------------------------


def modality_series(split, modalities) -> list[np.ndarray]:
    """Per row, the `channels x T` float32 array of all modalities' channels (modality order), from the Arrow columns."""
    table = split.with_format("arrow")[:]
    parts = []
    for name, spec in modalities.items():
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise ValueError(f"Modality {name!r} is missing in some rows: the rocket baselines need every channel.")
        offsets = np.asarray(column.offsets)
        frames = column.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, spec["input_dim"])
        parts.append([frames[start:stop].T for start, stop in zip(offsets[:-1] - offsets[0], offsets[1:] - offsets[0])])
    rows = []
    for index, pieces in enumerate(zip(*parts)):
        lengths = {piece.shape[1] for piece in pieces}
        if len(lengths) != 1:
            raise ValueError(f"Row {index}: modalities have different lengths {sorted(lengths)}; the rockets need one clock.")
        rows.append(np.concatenate(pieces, axis=0).astype(np.float32))
    return rows


def pad_with_last_value(series: list[np.ndarray], length: int) -> np.ndarray:
    """`N x C x length`: each `C x T_i` series padded at the end by repeating its last step (aeon 1.6's rockets take
    equal-length input only)."""
    out = np.empty((len(series), series[0].shape[0], length), dtype=np.float32)
    for index, values in enumerate(series):
        out[index, :, : values.shape[1]] = values
        out[index, :, values.shape[1] :] = values[:, -1:]
    return out


def load_benchmark_data(args):
    """`(data, x_train, y_train, x_test, y_test, notes)` from the recipe's loader; x arrays are `N x C x T`."""
    from modeling_posattn.toolkit.cli import parse_args as parse_train_args
    from modeling_posattn.toolkit.data_sources import load_data

    model_args, data_args, _, _ = parse_train_args(recipe_argv(args) + ["--output_dir", str(Path(args.work_dir) / "_probe")])
    data = load_data(data_args, model_args)
    if data.problem_type != "single_label_classification" or "test" not in data.dataset:
        raise ValueError(f"The benchmark needs a classification dataset with a test split; got {data.problem_type}, splits {list(data.dataset)}.")
    train = modality_series(data.dataset["train"], data.modalities)
    test = modality_series(data.dataset["test"], data.modalities)
    lengths = [s.shape[1] for s in train + test]
    notes = []
    if min(lengths) != max(lengths):
        notes.append(
            f"Variable length ({min(lengths)}-{max(lengths)} steps): for the rockets every series is padded to "
            f"{max(lengths)} steps by repeating its last value (aeon 1.6's MiniRocket/MultiRocket take equal lengths only)."
        )
    length = max(lengths)
    return (data, pad_with_last_value(train, length), np.asarray(data.dataset["train"]["labels"]),
            pad_with_last_value(test, length), np.asarray(data.dataset["test"]["labels"]), notes)


# ---------------------------------------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------------------------------------


def run_rockets(seeds, x_train, y_train, x_test, y_test) -> tuple[dict, dict]:
    version, classifiers = import_aeon()
    results, info = {}, {"aeon_version": version, "compile_s": {}}
    for name, cls in classifiers.items():
        warm = min(len(x_train), 20)  # numba compiles on first use: keep that out of the per-run times
        start = time.perf_counter()
        cls(random_state=0, n_jobs=1).fit(x_train[:warm], y_train[:warm]).predict(x_test[:2])
        info["compile_s"][name] = time.perf_counter() - start
        runs = []
        for seed in seeds:
            start, cpu = time.perf_counter(), time.process_time()
            predictions = cls(random_state=seed, n_jobs=1).fit(x_train, y_train).predict(x_test)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            runs.append({"seed": seed, "accuracy": float(np.mean(predictions == y_test)), "wall_s": wall, "cpu_s": cpu})
            print(f"{name} seed {seed}: accuracy {runs[-1]['accuracy']:.4f} in {wall:.2f} s (CPU {cpu:.2f} s)", flush=True)
        results[name] = runs
    return results, info


def run_posattn_seed(args, train_flags, seed: int) -> dict:
    output_dir = Path(args.work_dir) / args.name / f"seed-{seed}"
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *recipe_argv(args), "--seed", str(seed),
               "--output_dir", str(output_dir), "--overwrite_output_dir", "--disable_tqdm", "true", *train_flags]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    output_dir.mkdir(parents=True, exist_ok=True)
    log = output_dir.parent / f"seed-{seed}.log"
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        # wait4: this child's own CPU time (user + system), a measure that other jobs on a shared machine do not inflate
        _, wait_status, usage = os.wait4(process.pid, 0)
    process.returncode = status = os.waitstatus_to_exitcode(wait_status)
    wall, cpu = time.perf_counter() - start, usage.ru_utime + usage.ru_stime
    if status:
        raise RuntimeError(f"posattn seed {seed} failed (exit {status}); see {log}. Command: {' '.join(command)}")
    results = json.loads((output_dir / "all_results.json").read_text())
    run = {"seed": seed, "accuracy": results["test_accuracy"], "wall_s": wall, "cpu_s": cpu,
           "train_runtime_s": results.get("train_runtime")}
    print(f"posattn seed {seed}: accuracy {run['accuracy']:.4f}, train {run['train_runtime_s']:.1f} s, process {wall:.1f} s "
          f"(CPU {cpu:.1f} s)", flush=True)
    return run


def run_posattn(args, train_flags, seeds) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return sorted(pool.map(lambda seed: run_posattn_seed(args, train_flags, seed), seeds), key=lambda r: r["seed"])


# ---------------------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    accuracies = [r["accuracy"] for r in runs]
    summary = {
        "n": len(runs), "mean": statistics.fmean(accuracies), "std": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
        "min": min(accuracies), "max": max(accuracies), "wall_s_mean": statistics.fmean(r["wall_s"] for r in runs),
        "cpu_s_mean": statistics.fmean(r["cpu_s"] for r in runs),
    }
    if all(r.get("train_runtime_s") is not None for r in runs):
        summary["train_runtime_s_mean"] = statistics.fmean(r["train_runtime_s"] for r in runs)
    return summary


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_start": os.getloadavg()[0]}


def format_report(report: dict) -> str:
    data, lines = report["dataset"], []
    lines.append(f"# {report['name']}: posattn against MiniRocket and MultiRocket\n")
    lines.append(f"{data['description']}\n")
    lines.append(f"Command: `{report['command']}` ({report['date']}).\n")
    lines.append("| method | runs | test accuracy, mean ± std | min-max | wall time per run | CPU time per run |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for method, entry in report["methods"].items():
        s = entry["summary"]
        wall = f"{s['wall_s_mean']:.2f} s"
        if "train_runtime_s_mean" in s:
            wall = f"{s['train_runtime_s_mean']:.1f} s training ({s['wall_s_mean']:.1f} s process)"
        lines.append(f"| {method} | {s['n']} seed{'s' if s['n'] > 1 else ''} | {s['mean']:.3f} ± {s['std']:.3f} | {s['min']:.3f}-{s['max']:.3f} | {wall} | {s['cpu_s_mean']:.1f} s |")
    lines.append("")
    for method, entry in report["methods"].items():
        lines.append(f"- {method}: {entry['what']}; per seed: "
                     + ", ".join(f"{r['seed']}: {r['accuracy']:.4f}" for r in entry["runs"]) + ".")
    for note in report["notes"]:
        lines.append(f"- {note}")
    if report["published"]:
        lines.append("\nPublished accuracy on the official split (other protocols; see TSC_NOTES.md: some are means over "
                     "resamples, one uses the test set for checkpoint choice):\n")
        lines.append("| method | accuracy | source |")
        lines.append("|---|---:|---|")
        lines.extend(f"| {method} | {accuracy:.3f} | {source} |" for method, accuracy, source in report["published"])
    else:
        lines.append("\nNo published rows are recorded for this dataset in the script (`PUBLISHED`).")
    m = report["machine"]
    lines.append(f"\nMachine: {m['cpu']}, {m['cores']} cores available, GPU {m['gpu'] or 'none'}; torch {m['torch']}, "
                 f"numpy {m['numpy']}, Python {m['python']}" + (f", aeon {report['aeon_version']}" if report.get("aeon_version") else "")
                 + f". posattn runs: {report['jobs']} at a time, one torch thread each. Load average (1 min) "
                 f"{m['load_average_start']:.1f} at the start, {m['load_average_end']:.1f} at the end: on a shared machine "
                 "the wall times are upper bounds; the CPU times (user + system of the run) are not inflated by other jobs.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args, train_flags = parse_args(argv)
    data, x_train, y_train, x_test, y_test, notes = load_benchmark_data(args)
    args.name = args.name or str(data.options.get("name") or Path(args.dataset_name or args.config).stem).lower()
    print(f"{args.name}: train {x_train.shape}, test {x_test.shape} (N x channels x steps), {data.num_labels} classes", flush=True)
    report = {
        "name": args.name, "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "scripts/benchmark_quality.py", *(argv if argv is not None else sys.argv[1:])]),
        "dataset": {"description": data.description, "options": data.options, "labels": data.label_names,
                    "train_shape": list(x_train.shape), "test_shape": list(x_test.shape)},
        "methods": {}, "notes": notes, "published": PUBLISHED.get(args.name, []), "jobs": args.jobs, "machine": machine(),
    }
    seeds = list(range(1, args.seeds + 1))
    if not args.skip_rockets:  # first, alone on the machine: their times are not inflated by posattn jobs
        rockets, info = run_rockets(seeds, x_train, y_train, x_test, y_test)
        report["aeon_version"], report["rocket_compile_s"] = info["aeon_version"], info["compile_s"]
        for name, runs in rockets.items():
            report["methods"][f"{name} (aeon {info['aeon_version']})"] = {
                "what": f"aeon `{name}Classifier` defaults (10,000 kernels, RidgeClassifierCV), n_jobs=1, random_state=seed, "
                        f"fit + predict timed (numba compile excluded: {info['compile_s'][name]:.1f} s once)",
                "runs": runs, "summary": summarise(runs)}
    if not args.skip_posattn:
        posattn_seeds = list(range(1, (args.posattn_seeds or args.seeds) + 1))
        runs = run_posattn(args, train_flags, posattn_seeds)
        recipe = Path(args.config).name + (f" {' '.join(train_flags)}" if train_flags else "")
        report["methods"][f"posattn ({recipe})"] = {
            "what": f"`{shlex.join(['scripts/train.py', *recipe_argv(args), '--seed', 'S', *train_flags])}`"
                    + ", test accuracy from all_results.json",
            "runs": runs, "summary": summarise(runs)}
    report["machine"]["load_average_end"] = os.getloadavg()[0]
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / f"{args.name}.md").write_text(format_report(report))
    print(format_report(report))
    print(f"-> {output_dir / args.name}.md, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

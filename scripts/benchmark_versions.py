#!/usr/bin/env python
"""This checkout's model against the model of an earlier commit, interleaved in one process: the same configuration, the
same weights (the earlier model loads this one's state dict) and the same batch, so a ratio measures the code alone.
The earlier commit's `modeling_posattn/` is extracted with `git archive` into a temporary folder and imported under
another package name (its files import each other with single-dot relative imports, so they load unchanged).

Each round times every case's two models in turn, in alternating order; the ratio now / before is taken within the
round; median [min-max] over rounds. The largest output difference between the two models is printed beside it (0 or float noise: the same
computation). Denormals are flushed, as `posattn-train` runs; one thread.

    python scripts/benchmark_versions.py --before a775162 --cases relative_bias@4096 relative_bias@8x512 --rounds 5
    python scripts/benchmark_versions.py --before a775162 --output docs/results/speed/intel_xeon
"""

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_speed import ONE_MODALITY, TWO_MODALITIES, WIDE, cpu_name  # noqa: E402

SMALL = json.loads((ROOT / "configuration" / "posattn-small.json").read_text())
SMALL = {key: SMALL[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
RICH = dict(absolute_position_encoding="multiscale", position_fusion="gated", relative_position_encoding="time_rope")
# audio, video and two sensors, each on its own clock: the per-modality maps (stems, gate) four times over
FOUR_MODALITIES = {**TWO_MODALITIES, "accelerometer": {"input_dim": 6, "sampling_rate": 50.0},
                   "eeg": {"input_dim": 16, "sampling_rate": 250.0}}
NO_ABSOLUTE = dict(absolute_position_encoding="none")
# the shipped recipes' conv stem (configuration/av_digits.json, uea.json): audio frames and image rows at stride 2, and
# NATOPS's 24 sensor channels at stride 1
CONV = {"type": "conv", "kernel_size": 8, "filters": 8}
AV_DIGITS = {"audio": {"input_dim": 40, "sampling_rate": 100.0, "stem": dict(CONV, stride=2)},
             "image": {"input_dim": 28, "sampling_rate": None, "stem": dict(CONV, stride=2)}}
NATOPS = {"sensors": {"input_dim": 24, "sampling_rate": 25.0, "stem": dict(CONV, stride=1)}}
# a spectrogram in 4-frame tokens cut into 2 x 8 patches (no shipped recipe uses the patch stem)
PATCHES = {"spectrogram": {"input_dim": 40, "sampling_rate": 100.0,
                           "stem": {"type": "patch", "patch_size": [2, 8], "stride": 4}}}
# name: (modalities, frames per sample (tokens, but for a strided stem: frames / stride), samples, model settings,
# training step?[, ragged?]); ragged: sample k of B has
# 1 - k / (2B) of the tokens, so the batch is padded
CASES = {
    "sinusoidal@8x512": (ONE_MODALITY, 512, 8, SMALL, True),
    "sinusoidal@8x512 inference": (ONE_MODALITY, 512, 8, SMALL, False),
    "rope@8x512": (ONE_MODALITY, 512, 8, dict(SMALL, absolute_position_encoding="none", relative_position_encoding="rope"), True),
    "rope@8x512 inference": (ONE_MODALITY, 512, 8, dict(SMALL, absolute_position_encoding="none", relative_position_encoding="rope"),
                             False),
    "rich@8x512": (TWO_MODALITIES, 512, 8, dict(SMALL, **RICH), True),
    "rich@8x512 inference": (TWO_MODALITIES, 512, 8, dict(SMALL, **RICH), False),
    "rich@8x512 padded": (TWO_MODALITIES, 512, 8, dict(SMALL, **RICH), True, True),
    "rich wide@8x512": (TWO_MODALITIES, 512, 8, dict(WIDE, **RICH), True),
    "rich 4 modalities@8x512": (FOUR_MODALITIES, 512, 8, dict(SMALL, **RICH), True),
    "conv stems (av_digits recipe)@32x148": (AV_DIGITS, 148, 32, dict(SMALL, **NO_ABSOLUTE, relative_position_encoding="time_rope"), True),
    "conv stem (uea recipe)@16x51": (NATOPS, 51, 16, dict(SMALL, **NO_ABSOLUTE, relative_position_encoding="rope"), True),
    "patch stem@32x400": (PATCHES, 400, 32, dict(SMALL, **NO_ABSOLUTE, relative_position_encoding="rope"), True),
    "alibi@4096": (TWO_MODALITIES, 4096, 1, dict(WIDE, **NO_ABSOLUTE, relative_position_encoding="alibi"), True),
    "relative_bias@4096": (TWO_MODALITIES, 4096, 1, dict(WIDE, **NO_ABSOLUTE, relative_position_encoding="relative_bias"), True),
    "relative_bias@8x512": (TWO_MODALITIES, 512, 8, dict(WIDE, **NO_ABSOLUTE, relative_position_encoding="relative_bias"), True),
    "relative_bias@8x512 padded": (TWO_MODALITIES, 512, 8, dict(WIDE, **NO_ABSOLUTE, relative_position_encoding="relative_bias"),
                                   True, True),
    "relative_bias@16x64": (TWO_MODALITIES, 64, 16, dict(WIDE, **NO_ABSOLUTE, relative_position_encoding="relative_bias"), True),
    "alibi@8x512 padded": (TWO_MODALITIES, 512, 8, dict(WIDE, **NO_ABSOLUTE, relative_position_encoding="alibi"), True, True),
}


def package_at(revision: str, folder: Path) -> str:
    """Extract `modeling_posattn/` of `revision` into `folder` as package `posattn_<revision>`; return its name. Its
    `__init__.py` is left out (a namespace package): importing it would register its classes with the Auto classes in
    place of this checkout's."""
    name = "posattn_" + "".join(c if c.isalnum() else "_" for c in revision)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "modeling_posattn"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    (folder / "modeling_posattn").rename(folder / name)
    (folder / name / "__init__.py").unlink()
    return name


def model_classes(package: str) -> SimpleNamespace:
    """`PosAttnConfig`, `PosAttnModel` and `PosAttnProcessor` of a package by name (this checkout's or an extracted one)."""
    return SimpleNamespace(
        PosAttnConfig=importlib.import_module(f"{package}.configuration_posattn").PosAttnConfig,
        PosAttnModel=importlib.import_module(f"{package}.modeling_posattn").PosAttnModel,
        PosAttnProcessor=importlib.import_module(f"{package}.processing_posattn").PosAttnProcessor,
    )


def build(package: SimpleNamespace, modalities: dict, length: int, batch_size: int, settings: dict, ragged: bool = False):
    """A model of `package` (sdpa, no dropout) and a packed batch of `batch_size` samples of `length` tokens (80/20 with
    two modalities, as `benchmark_speed.posattn_case` builds them; equal shares with more); `ragged`: sample k has
    1 - k / (2B) of them."""
    import numpy as np
    import torch

    config = package.PosAttnConfig(modalities=modalities, hidden_dropout_prob=0.0, max_position_embeddings=length,
                                   attn_implementation="sdpa", **settings)
    torch.manual_seed(0)
    model = package.PosAttnModel(config)
    rng = np.random.default_rng(0)
    names = list(modalities)
    samples = []
    for sample in range(batch_size):
        tokens = int(length * (1 - sample / (2 * batch_size))) if ragged else length
        shares = [1.0] if len(names) == 1 else [0.8, 0.2] if len(names) == 2 else [1 / len(names)] * len(names)
        counts = [int(tokens * share) for share in shares[:-1]]
        counts.append(tokens - sum(counts))
        samples.append({name: rng.normal(size=(count, modalities[name]["input_dim"])).astype("float32")
                        for name, count in zip(names, counts)})
    return model, dict(package.PosAttnProcessor(modalities=modalities)(samples, return_tensors="pt"))


def step_of(model, batch: dict, train: bool):
    import torch

    def step():
        model.train(train)
        if train:
            model.zero_grad(set_to_none=True)
            model(**batch).last_hidden_state.square().mean().backward()
        else:
            with torch.no_grad():
                model(**batch)

    return step


def compare(before_package, now_package, case: tuple, rounds: int) -> dict:
    """Interleaved rounds of the two models of one case; ratio now / before per round."""
    import torch

    modalities, length, batch_size, settings, train, *ragged = case
    now, batch = build(now_package, modalities, length, batch_size, settings, *ragged)
    before, _ = build(before_package, modalities, length, batch_size, settings, *ragged)
    before.load_state_dict(now.state_dict())
    with torch.no_grad():
        difference = (now.eval()(**batch).last_hidden_state - before.eval()(**batch).last_hidden_state).abs().max().item()
    steps = {"before": step_of(before, batch, train), "now": step_of(now, batch, train)}
    seconds = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for round_index in range(rounds):
        for name in ("before", "now") if round_index % 2 == 0 else ("now", "before"):  # neither always goes first
            start = time.perf_counter()
            steps[name]()
            seconds[name].append(time.perf_counter() - start)
    ratios = [now / before for now, before in zip(seconds["now"], seconds["before"])]
    return {"before_seconds": statistics.median(seconds["before"]), "now_seconds": statistics.median(seconds["now"]),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "max_output_difference": difference, "train": train}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=None, help="folder for versions_<before>.md/.json (printed only if absent)")
    args = parser.parse_args()
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before], capture_output=True,
                              text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    now_package = model_classes("modeling_posattn")
    results = {"machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}, denormals flushed", "before": revision,
               "now": head, "rounds": args.rounds, "cases": {}}
    with tempfile.TemporaryDirectory() as folder:
        sys.path.insert(0, folder)
        before_package = model_classes(package_at(revision, Path(folder)))
        for name in args.cases:
            row = compare(before_package, now_package, CASES[name], args.rounds)
            results["cases"][name] = row
            print(f"{name:>24}: {row['before_seconds']:.3f} s -> {row['now_seconds']:.3f} s, now/before "
                  f"{row['ratio_median']:.2f}x [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}], max |output difference| "
                  f"{row['max_output_difference']:.1e}", flush=True)
    if args.output:
        write(results, Path(args.output))


def write(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    stem = output / f"versions_{results['before']}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"Machine: {results['machine']}. The model at {results['now']} (with its uncommitted changes, if any) against "
             f"the model at {results['before']}: same configuration, weights and batch, {results['rounds']} interleaved "
             "rounds; s per step (median) and now / before per round, median [min-max].", "",
             "| case | step | before s | now s | now / before | max abs output difference |", "|---|---|---:|---:|---:|---:|"]
    for name, row in results["cases"].items():
        lines.append(f"| {name} | {'training' if row['train'] else 'inference'} | {row['before_seconds']:.3f} | "
                     f"{row['now_seconds']:.3f} | {row['ratio_median']:.2f}x [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] "
                     f"| {row['max_output_difference']:.1e} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Time-split attention against the dense bias and against `none`, by sequence length and block size, interleaved in
one process: the measurements behind `time_split_min_length` (2048) and the encodings' `split_query_rows` (ALiBi 1024
in training, 256 in inference; relative_bias 256).

For each encoding and each `SAMPLESxTOKENS` case, one model (benchmark_speed.py's 4096-token configuration: two
modalities at 100 Hz and 25 Hz, hidden 128, 4 layers, 4 heads) is timed with the dense bias
(`time_split_min_length=None`), time-split at each block size, and a `none` model of the same shape; each round runs them
all in alternating order; ratios to `none` per round, median [min-max]. Training steps (forward + backward) unless
`--inference`. Denormals flushed, as `posattn-train` runs; one thread.

    python scripts/benchmark_time_split.py --cases 1x4096 --rows 256 1024 --rounds 3
    python scripts/benchmark_time_split.py --output docs/results/speed/intel_xeon     # about 15 minutes
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_speed import TWO_MODALITIES, WIDE, cpu_name  # noqa: E402
from benchmark_versions import build, model_classes, step_of  # noqa: E402

ENCODINGS = ("alibi", "relative_bias")
DEFAULT_CASES = ("8x512", "4x1024", "2x2048", "1x4096", "1x8192")
DEFAULT_ROWS = (256, 512, 1024)


def timed_variants(encoding: str, samples: int, tokens: int, rows: list[int], train: bool, modalities=TWO_MODALITIES,
                   settings=WIDE) -> dict:
    """name -> one step of: `none`, the dense bias, and time-split attention at each block size (same weights)."""
    from modeling_posattn import bias_posattn

    package = model_classes("modeling_posattn")
    base = dict(settings, absolute_position_encoding="none")
    none, batch = build(package, modalities, tokens, samples, dict(base, relative_position_encoding="none"))
    dense, _ = build(package, modalities, tokens, samples,
                     dict(base, relative_position_encoding=encoding, time_split_min_length=None))
    split, _ = build(package, modalities, tokens, samples, dict(base, relative_position_encoding=encoding,
                                                                time_split_min_length=1))
    split.load_state_dict(dense.state_dict())
    encoding_class = type(split.relative_position_encoding)
    assert encoding_class in (bias_posattn.ALiBiPositionBias, bias_posattn.RelativeTimeBias)

    def split_step(block_rows: int):
        step = step_of(split, batch, train)

        def run():
            saved = encoding_class.split_query_rows, encoding_class.split_query_rows_inference
            encoding_class.split_query_rows = encoding_class.split_query_rows_inference = block_rows
            try:
                step()
            finally:
                encoding_class.split_query_rows, encoding_class.split_query_rows_inference = saved

        return run

    variants = {"none": step_of(none, batch, train), "dense": step_of(dense, batch, train)}
    variants.update({f"split {block_rows}": split_step(block_rows) for block_rows in rows})
    return variants


def interleaved(variants: dict, rounds: int) -> dict:
    """Median seconds and ratio to `none` (median [min-max] over rounds) of each variant."""
    for step in variants.values():
        step()  # warm-up
    seconds = {name: [] for name in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(list(variants)))
        for name in order:
            start = time.perf_counter()
            variants[name]()
            seconds[name].append(time.perf_counter() - start)
    results = {}
    for name, times in seconds.items():
        ratios = [time_ / none for time_, none in zip(times, seconds["none"])]
        results[name] = {"seconds": statistics.median(times), "ratio_median": statistics.median(ratios),
                         "ratio_min": min(ratios), "ratio_max": max(ratios)}
    return results


def write(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    stem = output / ("time_split_inference" if results["inference"] else "time_split")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    step = "inference" if results["inference"] else "training step"
    rounds = results["rounds"]
    lines = [f"Machine: {results['machine']}. {step.capitalize()} time / `none`'s, {rounds} interleaved rounds, "
             "median [min-max]; the dense bias is `time_split_min_length=None`, `split R` time-split attention with R "
             "queries per block. Command: `python scripts/benchmark_time_split.py" + results["arguments"] + "`.", "",
             "| encoding | samples x tokens | variant | s per step | / none |", "|---|---|---|---:|---:|"]
    for encoding, cases in results["encodings"].items():
        for case, variants in cases.items():
            for name, row in variants.items():
                lines.append(f"| {encoding} | {case} | {name} | {row['seconds']:.3f} | {row['ratio_median']:.2f}x "
                             f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=ENCODINGS)
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="SAMPLESxTOKENS")
    parser.add_argument("--rows", nargs="+", type=int, default=list(DEFAULT_ROWS), help="queries per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inference", action="store_true", help="time forward passes without gradients")
    parser.add_argument("--output", default=None, help="folder for time_split[_inference].md/.json")
    args = parser.parse_args()
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    arguments = "".join(f" {arg}" for arg in sys.argv[1:])
    results = {"machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}, denormals flushed", "rounds": args.rounds,
               "inference": args.inference, "arguments": arguments, "encodings": {}}
    for encoding in args.encodings:
        results["encodings"][encoding] = {}
        for case in args.cases:
            samples, tokens = (int(part) for part in case.split("x"))
            variants = timed_variants(encoding, samples, tokens, args.rows, not args.inference)
            rows = interleaved(variants, args.rounds)
            results["encodings"][encoding][case] = rows
            summary = ", ".join(f"{name} {row['ratio_median']:.2f}x" for name, row in rows.items() if name != "none")
            print(f"{encoding} {case}: none {rows['none']['seconds']:.3f} s; {summary}", flush=True)
    if args.output:
        write(results, Path(args.output))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""torch.compile speed-up on CPU (issue 13, item 3): eager against `torch.compile(model, fullgraph=True)` (inductor),
interleaved in one process, median and min-max of the per-round ratio; the small preset (as `benchmark_speed.py`),
8 samples x 512 tokens (`--shapes` adds others: at a few hundred tokens a step is bound by per-operator overhead, which
compiling removes, at 4096 by the flash kernels and GEMMs, which it calls as they are), a training step (forward +
backward), inference, and inference compiled with inductor's `freezing` (`options={"freezing": True}`: the weights
become constants of the graph). Compile time is the first call's. Denormals are flushed as `posattn-train` runs. Also the ceiling: the compiled step's time in the kernels
inductor calls as they are (flash attention, GEMMs; torch.profiler) bounds what compiling can gain. Writes
`compile.md` and `compile.json` to `--output`. Run from the repository root (inductor builds C++: the first call
takes minutes on a loaded machine):
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1 python scripts/benchmark_compile.py --output docs/results/speed/intel_xeon
    ... python scripts/benchmark_compile.py --shapes 1x64 8x64 8x512 --rounds 10
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchmark_speed import ONE_MODALITY, TWO_MODALITIES, cpu_name, interleaved, posattn_case, step_fn  # noqa: E402

ENCODINGS = {
    "sinusoidal": (ONE_MODALITY, {}),
    "multiscale+gated+time_rope (2 mod.)": (
        TWO_MODALITIES,
        dict(absolute_position_encoding="multiscale", position_fusion="gated", relative_position_encoding="time_rope"),
    ),
}


# What inductor calls as it is (extern kernels): the flash attention kernels and the GEMMs. Their time in the compiled
# step bounds the speed-up: eager time / their time is what compiling would give if everything it fuses took no time.
EXTERN_KERNELS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "mkldnn::_linear_pointwise",  # the GEMMs of a frozen graph, where oneDNN takes them
    "mkl::_mkl_linear",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--encodings", nargs="+", default=list(ENCODINGS), choices=list(ENCODINGS))
    parser.add_argument("--output", default="docs/results/speed", help="folder for compile.md and compile.json")
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush denormals (torch's default)")
    parser.add_argument("--shapes", nargs="+", default=["8x512"], type=batch_shape,
                        help="samples x tokens of the batches timed, e.g. 1x64 8x64 8x512 (default 8x512)")
    args = parser.parse_args()
    import torch

    flushed = not args.keep_denormals and torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    small = json.loads((ROOT.parent / "configuration" / "posattn-small.json").read_text())
    small = {key: small[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    results = {"machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}, denormals {'flushed' if flushed else 'kept'}",
               "rounds": args.rounds}
    for name, shape in ((name, shape) for shape in args.shapes for name in args.encodings):
        modalities, settings = ENCODINGS[name]
        model, inputs = posattn_case(modalities, shape[1], shape[0], **small, **settings)
        # dynamo keys its cache on the forward's code, shared by every model here: without a reset the models of a
        # few shapes exceed its recompile limit (8), which fullgraph=True turns into an error
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True)
        # inductor's freezing: the weights become constants of the graph (inference only, the weights must not change)
        frozen = torch.compile(model, fullgraph=True, options={"freezing": True})
        # several steps per timing below a few thousand tokens, so a round is not a handful of microseconds
        steps = max(2, 4096 // (shape[0] * shape[1]))
        for mode, compiled_model in (("train", compiled), ("inference", compiled), ("inference, frozen", frozen)):
            train = mode == "train"
            cases = {"eager": step_fn(model, inputs, train), "compiled": step_fn(compiled_model, inputs, train)}
            start = time.perf_counter()
            cases["compiled"]()
            first_call = time.perf_counter() - start
            label = row_label(name, shape, mode)
            print(f"{label}: first compiled call {first_call:.0f} s", flush=True)
            timings = interleaved(cases, "eager", args.rounds, steps=steps)
            extern = extern_kernel_seconds(cases["compiled"])
            ceiling = timings["eager"]["seconds_median"] / extern
            print(f"  extern kernels {extern:.4f} s per compiled step: at most {ceiling:.2f}x faster than eager", flush=True)
            results[label] = {**timings["compiled"], "eager_seconds_median": timings["eager"]["seconds_median"],
                              "first_call_seconds": first_call, "extern_seconds": extern, "ceiling": ceiling}
    write(results, Path(args.output))


def batch_shape(text: str) -> tuple[int, int]:
    """`"8x512"` -> `(8, 512)`: samples x tokens."""
    try:
        samples, tokens = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected samples x tokens such as 8x512, got {text!r}") from None
    if samples < 1 or tokens < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1 sample of 2 tokens (the two-modality case splits them)")
    return samples, tokens


def row_label(encoding: str, shape: tuple[int, int], mode: str) -> str:
    """The table row's name: the 8 x 512 rows keep the names of the results before `--shapes` existed."""
    return f"{encoding} / {mode}" if shape == (8, 512) else f"{encoding} @ {shape[0]} x {shape[1]} / {mode}"


def extern_kernel_seconds(step, steps: int = 3) -> float:
    """Seconds per step that `step` spends in `EXTERN_KERNELS` (self time under torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    return sum(event.self_cpu_time_total for event in profiler.key_averages() if event.key in EXTERN_KERNELS) / steps / 1e6


def write(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "compile.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Machine: {results['machine']}. `torch.compile(model, fullgraph=True)` (inductor) against eager, small preset, "
        f"8 samples x 512 tokens unless a row names another batch (samples x tokens), {results['rounds']} interleaved "
        "rounds; compiled time / eager time per round, median [min-max]. "
        "Ceiling: eager time / the compiled step's time in the kernels inductor calls as they are (flash attention, "
        "GEMMs), i.e. the speed-up if everything inductor fuses took no time. First call: the compile, short when "
        "inductor's on-disk cache already holds the graphs.",
        "",
        "| configuration / step | eager s | compiled s | compiled / eager | speed-up | SDPA + GEMM s | ceiling | first call s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        if not isinstance(row, dict):
            continue
        lines.append(
            f"| {name} | {row['eager_seconds_median']:.4f} | {row['seconds_median']:.4f} | {row['ratio_median']:.2f}x "
            f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] | {1 / row['ratio_median']:.2f}x | {row['extern_seconds']:.4f} "
            f"| {row['ceiling']:.2f}x | {row['first_call_seconds']:.0f} |"
        )
    (output / "compile.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {output / 'compile.md'} and {output / 'compile.json'}")


if __name__ == "__main__":
    main()

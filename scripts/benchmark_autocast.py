#!/usr/bin/env python
"""Training under bfloat16 autocast on CPU against float32, interleaved in one process: for `none`, `alibi` and
`relative_bias`, a training step (forward + backward) of benchmark_speed.py's wide model (two modalities at 100 Hz and
25 Hz, hidden 128, 4 layers, 4 heads), 8 samples x 512 tokens by default; and `none` and `relative_bias` under autocast
as they ran before half-precision training got its own paths (SDPA's kernels in half precision; for `relative_bias` its
math path, on the dense or query-blocked bias). Each round times every case once; ratios to `none` at the same precision
and to the same encoding in float32, per round, median [min-max]. Denormals flushed, one thread. What autocast gains
depends on the CPU's bfloat16 units (the Intel Xeon of docs/results/speed/intel_xeon has AMX-BF16).

    python scripts/benchmark_autocast.py --rounds 3
    python scripts/benchmark_autocast.py --rounds 15 --output docs/results/speed/intel_xeon     # about 2 minutes
    python scripts/benchmark_autocast.py --case 1x4096 --rounds 3 --output docs/results/speed/intel_xeon
"""

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_speed import TWO_MODALITIES, WIDE, cpu_name, posattn_case, seconds_per_round  # noqa: E402

ENCODINGS = ("none", "alibi", "relative_bias")
# the code before half-precision training got its own paths: SDPA's kernels in half precision (for relative_bias its
# math path, on the dense or query-blocked bias)
BEFORE = {"none": "none, bfloat16 (SDPA's bfloat16 backward, as before)",
          "relative_bias": "relative_bias, bfloat16 (SDPA's math path, as before)"}


def training_step(model, inputs, bfloat16: bool):
    import torch

    def step():
        model.train()
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            hidden = model(**inputs).last_hidden_state
        hidden.float().square().mean().backward()

    return step


@contextlib.contextmanager
def half_precision_as_before():
    """Half-precision queries as they ran: `sdpa_attention_forward` sent them to transformers' sdpa (its flash kernels
    in half precision, or its math path for a bias that needs a gradient), and time-split attention was float32-only."""
    import torch

    from modeling_posattn import attention_posattn, bias_posattn
    from modeling_posattn import modeling_posattn as modeling

    original, score_bias_for = attention_posattn.sdpa_attention_forward, modeling.score_bias_for

    def bias_as_before(encoding, positions, dtype, config, dropout):
        if torch.is_autocast_enabled("cpu") or dtype != torch.float32:
            return bias_posattn.attention_bias_for(encoding, positions, dtype, config)
        return score_bias_for(encoding, positions, dtype, config, dropout)

    def as_before(module, query, key, value, attention_mask, *args, **kwargs):
        if query.dtype != torch.float32:
            sdpa = attention_posattn.ALL_ATTENTION_FUNCTIONS["sdpa"]
            return sdpa(module, query, key, value, attention_mask, *args, **kwargs)
        return original(module, query, key, value, attention_mask, *args, **kwargs)

    attention_posattn.sdpa_attention_forward, modeling.score_bias_for = as_before, bias_as_before
    try:
        yield
    finally:
        attention_posattn.sdpa_attention_forward, modeling.score_bias_for = original, score_bias_for


def cases(length: int, samples: int, modalities=TWO_MODALITIES, settings=WIDE) -> dict:
    """name -> one training step; the same weights for both precisions of an encoding."""
    steps = {}
    for encoding in ENCODINGS:
        model, inputs = posattn_case(modalities, length, samples, **settings, absolute_position_encoding="none",
                                     relative_position_encoding=encoding)
        steps[f"{encoding}, float32"] = training_step(model, inputs, False)
        steps[f"{encoding}, bfloat16"] = training_step(model, inputs, True)
    for encoding, name in BEFORE.items():
        steps[name] = as_before(steps[f"{encoding}, bfloat16"])
    return steps


def as_before(step):
    def step_as_before():
        with half_precision_as_before():
            step()

    return step_as_before


def interleaved(steps: dict, rounds: int) -> dict:
    """Seconds per case and round; each case's ratio to `none` at its precision and to its encoding in float32."""
    seconds = seconds_per_round(steps, rounds)
    summary = {}
    for name, values in seconds.items():
        encoding = name.split(",")[0]
        precision = "float32" if name.endswith("float32") else "bfloat16"
        row = {"seconds_median": statistics.median(values)}
        for key, baseline in (("vs_none", f"none, {precision}"), ("vs_float32", f"{encoding}, float32")):
            ratios = [value / reference for value, reference in zip(values, seconds[baseline])]
            row[key] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        summary[name] = row
    return summary


def write(results: dict, output: Path) -> None:
    """`autocast.md/.json` for the default case (8x512), `autocast_<case>.md/.json` for another."""
    output.mkdir(parents=True, exist_ok=True)
    stem = "autocast" if results["case"] == "8x512" else f"autocast_{results['case']}"
    (output / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"Machine: {results['machine']}. `python scripts/benchmark_autocast.py{results['arguments']}`. Training step "
        f"(forward + backward) of the wide model (hidden 128, 4 layers, 4 heads, two modalities), "
        f"{results['case']} tokens, {results['rounds']} interleaved rounds; per-round ratios, median [min-max]. "
        "bfloat16: `torch.autocast('cpu', dtype=torch.bfloat16)` around the forward.",
        "",
        "| case | s | vs `none` at its precision | vs itself in float32 |",
        "|---|---:|---:|---:|",
    ]
    for name, row in results["cases"].items():
        ratios = [f"{row[key]['median']:.2f}x [{row[key]['min']:.2f}-{row[key]['max']:.2f}]" for key in ("vs_none", "vs_float32")]
        lines.append(f"| {name} | {row['seconds_median']:.3f} | {ratios[0]} | {ratios[1]} |")
    (output / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {output / stem}.md and .json")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case", default="8x512", help="SAMPLESxTOKENS")
    parser.add_argument("--output", default=None, help="folder for autocast.md/.json")
    args = parser.parse_args()
    import torch

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    samples, length = map(int, args.case.split("x"))
    summary = interleaved(cases(length, samples), args.rounds)
    for name, row in summary.items():
        print(f"  {name:>52}: {row['seconds_median']:.3f} s, {row['vs_none']['median']:.2f}x none, "
              f"{row['vs_float32']['median']:.2f}x float32", flush=True)
    if args.output:
        arguments = "".join(f" {flag} {value}" for flag, value in (("--rounds", args.rounds), ("--case", args.case),
                                                                      ("--output", args.output)))
        write({"machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}, denormals flushed", "case": args.case,
               "rounds": args.rounds, "arguments": arguments, "cases": summary}, Path(args.output))


if __name__ == "__main__":
    main()

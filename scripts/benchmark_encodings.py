#!/usr/bin/env python
"""Cost of every positional encoding against `none`: forward+backward tokens per second and peak memory.

Each (encoding, length) runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own; the
figure reported is the growth of peak RSS over the process's footprint just before the first step, i.e. activations,
gradients and any attention mask or bias. The model is `configuration/posattn-small.json`-sized (hidden 128, 4 layers,
4 heads), one sample of L tokens split 80/20 between a 100 Hz and a 25 Hz modality, sdpa attention, fp32, CPU.

    python scripts/benchmark_encodings.py                      # 512 and 4096 tokens, writes docs/results/benchmark_cpu.md
    python scripts/benchmark_encodings.py --lengths 512 --repeats 3
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ENCODINGS = [
    ("none", dict(absolute_position_encoding="none")),
    ("sinusoidal", dict(absolute_position_encoding="sinusoidal")),
    ("learned", dict(absolute_position_encoding="learned")),
    ("dynamic", dict(absolute_position_encoding="dynamic")),
    ("conditional", dict(absolute_position_encoding="conditional")),
    ("multiscale", dict(absolute_position_encoding="multiscale")),
    ("sinusoidal+concat", dict(absolute_position_encoding="sinusoidal", position_fusion="concat")),
    ("sinusoidal+gated", dict(absolute_position_encoding="sinusoidal", position_fusion="gated")),
    ("rope", dict(absolute_position_encoding="none", relative_position_encoding="rope")),
    ("time_rope", dict(absolute_position_encoding="none", relative_position_encoding="time_rope")),
    ("alibi", dict(absolute_position_encoding="none", relative_position_encoding="alibi")),
    ("relative_bias", dict(absolute_position_encoding="none", relative_position_encoding="relative_bias")),
]
BIAS = {"alibi", "relative_bias"}

WORKER = r"""
import json, resource, sys, time
import numpy as np, torch
from modeling_posattn import PosAttnConfig, PosAttnModel, PosAttnProcessor
settings, length, repeats, threads = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
modalities = {"audio": {"input_dim": 40, "sampling_rate": 100.0}, "video": {"input_dim": 64, "sampling_rate": 25.0}}
config = PosAttnConfig(modalities=modalities, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=512, hidden_dropout_prob=0.0, max_position_embeddings=length,
                       attn_implementation="sdpa", **settings)
torch.manual_seed(0)
model = PosAttnModel(config).train()
rng = np.random.default_rng(0)
audio = int(length * 0.8)
batch = PosAttnProcessor(modalities=modalities)(
    [{"audio": rng.normal(size=(audio, 40)), "video": rng.normal(size=(length - audio, 64))}], return_tensors="pt")
def step():
    model.zero_grad(set_to_none=True)
    model(**batch).last_hidden_state.square().mean().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
step()  # warm-up
start = time.perf_counter()
for _ in range(repeats):
    step()
elapsed = (time.perf_counter() - start) / repeats
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds_per_step": elapsed, "tokens_per_second": length / elapsed, "peak_mb": (peak - before) / 1024}))
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="encoding names to run (default: all)")
    parser.add_argument("--output", default="docs/results/benchmark_cpu")
    args = parser.parse_args()

    import torch

    machine = f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}"
    rows = []
    for name, settings in ENCODINGS:
        if args.only and name not in args.only:
            continue
        for length in args.lengths:
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", WORKER, json.dumps(settings), str(length), str(args.repeats), str(args.threads)],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise SystemExit(f"{name} at {length} tokens failed:\n{result.stderr}")
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append({"encoding": name, "length": length, **measured})
            print(f"{name:>18} L={length:<5} {measured['tokens_per_second']:>9.0f} tok/s "
                  f"{measured['peak_mb']:>8.1f} MB  ({time.perf_counter() - started:.0f} s)", flush=True)

    baseline = {row["length"]: row["tokens_per_second"] for row in rows if row["encoding"] == "none"}
    lines = [
        f"Forward+backward, one sample, hidden 128, 4 layers, 4 heads, sdpa, fp32. Machine: {machine}. "
        f"Mean of {args.repeats} steps after a warm-up. Memory: growth of peak RSS during the steps.",
        "",
        "| encoding | path | " + " | ".join(f"tok/s @ {n}" for n in args.lengths) + " | "
        + " | ".join(f"vs none @ {n}" for n in args.lengths) + " | " + " | ".join(f"peak MB @ {n}" for n in args.lengths) + " |",
        "|---|---|" + "---:|" * (3 * len(args.lengths)),
    ]
    for name, _ in ENCODINGS:
        by_length = {row["length"]: row for row in rows if row["encoding"] == name}
        if not by_length:
            continue
        path = "sdpa + dense float bias (flex: score_mod)" if name in BIAS else "fused sdpa, no L x L"
        speed = " | ".join(f"{by_length[n]['tokens_per_second']:.0f}" for n in args.lengths)
        ratio = " | ".join(
            f"{by_length[n]['tokens_per_second'] / baseline[n]:.2f}x" if n in baseline else "-" for n in args.lengths
        )
        memory = " | ".join(f"{by_length[n]['peak_mb']:.0f}" for n in args.lengths)
        lines.append(f"| {name} | {path} | {speed} | {ratio} | {memory} |")
    table = "\n".join(lines)
    print("\n" + table)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(table + "\n")
    output.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {output.with_suffix('.md')} and {output.with_suffix('.json')}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Profile one training step (forward + backward) of a PosAttn model with `torch.profiler`: the operators with the
most self CPU time, grouped by input shape. The model and batch are `benchmark_speed.py`'s 4096-token case (hidden 128,
4 layers, 4 heads, two modalities, one sample); one warm-up step first. Denormal floats are flushed to zero, as
`posattn-train` runs, unless `--keep-denormals`. Last line: one step's time without the profiler and the process's peak
RSS (the third example shows what glibc's reuse of freed memory is worth, and costs: speed_notes.md).

    python scripts/profile_training_step.py --relative alibi
    python scripts/profile_training_step.py --relative alibi --keep-denormals
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python scripts/profile_training_step.py --relative relative_bias
    python scripts/profile_training_step.py --relative relative_bias --length 2048 --rows 15
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_speed import TWO_MODALITIES, WIDE, posattn_case  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--absolute", default="none", help="absolute_position_encoding")
    parser.add_argument("--relative", default="alibi", help="relative_position_encoding")
    parser.add_argument("--length", type=int, default=4096, help="tokens in the one sample")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=10, help="operators to print")
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush denormals (torch's default)")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_flush_denormal(not args.keep_denormals)
    torch.set_num_threads(args.threads)
    model, batch = posattn_case(TWO_MODALITIES, args.length, 1, **WIDE, absolute_position_encoding=args.absolute,
                                relative_position_encoding=args.relative)
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        model(**batch).last_hidden_state.square().mean().backward()

    step()
    started = time.perf_counter()
    step()
    seconds, peak_mb = time.perf_counter() - started, peak_rss_mb()  # before the profiler adds its own memory
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        step()
    averages = profiler.key_averages(group_by_input_shape=True)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60,
                         max_shapes_column_width=60))
    print(f"one step without the profiler: {seconds:.2f} s; the process's peak RSS by then: {peak_mb:.0f} MB")


def peak_rss_mb() -> float:
    """The process's resident-set high-water mark (Linux `/proc/self/status`), 0 where there is none."""
    try:
        line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 1024


if __name__ == "__main__":
    main()

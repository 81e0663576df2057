#!/usr/bin/env python
"""Alternatives to one attention layer's projections, rotation and kernel at the small preset (8 x 512 tokens, width
64, 4 heads), each timed against the form the model uses, interleaved in one process, median [min-max] of the ratios
over rounds. Training = forward + backward. Kept because each alternative was measured and not adopted
(docs/speed_notes.md, "Issue 13: where the targets stand"):

- q, k, v as three GEMMs (the model, as BERT) or as one over concatenated weights;
- q and k rotated by two complex products with the phasors broadcast over heads (the model: `rotate_interleaved`), with
  the phasors expanded to every head, as one product over stacked q/k rows, or through an `autograd.Function` whose
  backward multiplies by precomputed conjugates;
- SDPA's flash kernel (the model) or its math path.

    python scripts/benchmark_layer_variants.py --rounds 300
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_posattn.rotary_posattn import rotate_interleaved  # noqa: E402

BATCH, LENGTH, WIDTH, HEADS = 8, 512, 64, 4


class RotateWithConjugate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pairs, phasors, conjugates):
        ctx.save_for_backward(conjugates)
        return pairs * phasors

    @staticmethod
    def backward(ctx, grad):
        (conjugates,) = ctx.saved_tensors
        return grad * conjugates, None, None


def projection_cases(x, linears, heads_count):
    """`x`: `(B, L, width)`; `linears`: the q, k and v projections."""
    q, k, v = linears
    batch, length, _ = x.shape

    def heads(t):
        return t.view(batch, length, heads_count, -1).transpose(1, 2)

    def three_gemms():
        return F.scaled_dot_product_attention(heads(q(x)), heads(k(x)), heads(v(x)))

    def one_gemm():
        weight = torch.cat([q.weight, k.weight, v.weight])
        bias = torch.cat([q.bias, k.bias, v.bias])
        qkv = F.linear(x, weight, bias).view(batch, length, 3, heads_count, -1).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(*qkv.unbind(0))

    return {"three GEMMs (the model)": three_gemms, "one GEMM": one_gemm}


def rotation_cases(x, linears, heads_count):
    """q and k projected and rotated by random angles, `(B, L, heads, d)` each."""
    q, k, _ = linears
    batch, length, width = x.shape
    head_dim = width // heads_count
    angles = torch.rand(batch, length, 1, head_dim // 2) * 6.28
    phasors = torch.polar(torch.ones_like(angles), angles)
    per_head = phasors.expand(batch, length, heads_count, head_dim // 2).contiguous()
    stacked_per_head = phasors.expand(batch, length, 2 * heads_count, head_dim // 2).contiguous()
    stacked_conjugates = stacked_per_head.conj().resolve_conj()

    def pairs(t):
        return torch.view_as_complex(t.unflatten(-1, (-1, 2)))

    def two_products(rotation_phasors):
        def rotate():
            query = q(x).view(batch, length, heads_count, head_dim)
            key = k(x).view(batch, length, heads_count, head_dim)
            return rotate_interleaved(query, rotation_phasors), rotate_interleaved(key, rotation_phasors)
        return rotate

    def one_product(rotation):
        def rotate():
            weight, bias = torch.cat([q.weight, k.weight]), torch.cat([q.bias, k.bias])
            both = F.linear(x, weight, bias).view(batch, length, 2 * heads_count, head_dim)
            rotated = torch.view_as_real(rotation(pairs(both))).flatten(-2)
            return rotated[:, :, :heads_count], rotated[:, :, heads_count:]
        return rotate

    return {
        "two products, broadcast (the model)": two_products(phasors),
        "two products, phasors per head": two_products(per_head),
        "one product, broadcast": one_product(lambda p: p * phasors),
        "one product, phasors per head": one_product(lambda p: p * stacked_per_head),
        "one product, own backward": one_product(lambda p: RotateWithConjugate.apply(p, stacked_per_head, stacked_conjugates)),
    }


def attention_inputs(x, heads_count):
    """Random `(B, heads, L, d)` query, key and value for `x`'s shape."""
    batch, length, width = x.shape
    return [torch.randn(batch, heads_count, length, width // heads_count, requires_grad=True) for _ in range(3)]


def kernel_cases(query, key, value):
    def math_path():
        scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))
        return torch.matmul(scores.softmax(-1), value)

    return {"flash (the model)": lambda: F.scaled_dot_product_attention(query, key, value), "math path": math_path}


def check_same(cases: dict) -> None:
    """Every case computes the first one's outputs (within float rounding), or the comparison means nothing."""
    with torch.no_grad():
        reference = [case() for case in cases.values()]
    for name, outputs in zip(cases, reference):
        if not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(torch.atleast_1d(outputs), torch.atleast_1d(reference[0]))):
            raise SystemExit(f"{name} computes something else than {next(iter(cases))}")


def timed(cases: dict, train: bool, rounds: int) -> None:
    """Each case once per round, in turn, after one warm-up call each; prints time and ratio to the first case."""
    def call(case):
        if not train:
            with torch.no_grad():
                return case()
        outputs = case()
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        torch.autograd.backward(outputs, [torch.ones_like(output) for output in outputs])

    for case in cases.values():
        call(case)
    seconds = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            start = time.perf_counter()
            call(case)
            seconds[name].append(time.perf_counter() - start)
    baseline = seconds[next(iter(cases))]
    for name, values in seconds.items():
        ratios = [value / reference for value, reference in zip(values, baseline)]
        print(f"  {name:>36}: {statistics.median(values) * 1e3:7.2f} ms, {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    x = torch.randn(BATCH, LENGTH, WIDTH, requires_grad=True)
    linears = [torch.nn.Linear(WIDTH, WIDTH) for _ in range(3)]
    for title, cases in [("q/k/v projections + SDPA", projection_cases(x, linears, HEADS)),
                         ("q/k projections + rotation", rotation_cases(x, linears, HEADS)),
                         ("attention kernel", kernel_cases(*attention_inputs(x, HEADS)))]:
        check_same(cases)
        for train in (True, False):
            print(f"{title}, {'training' if train else 'inference'} ({args.rounds} rounds, time / first row's)", flush=True)
            timed(cases, train, args.rounds)


if __name__ == "__main__":
    main()

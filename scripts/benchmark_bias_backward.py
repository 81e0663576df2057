#!/usr/bin/env python
"""Would a custom backward make a *trainable* attention bias (relative_bias) cheap on CPU? (issue 13, item 1)

torch's CPU flash kernel has no bias gradient, so SDPA with a bias that requires grad takes its math path. Two
candidates, both exact against the math path (checked below, and in tests):
- `FlashAttentionWithBiasGradient` (measured first, not adopted): the flash kernel's backward for q, k and v, and the
  bias gradient `dS = P * (dO V^T - rowsum(dO * O))` with `P = exp(q k^T s + b - lse)` computed beside it: P is built
  twice (inside the flash backward and here), two more L x L matmuls.
- `SdpaWithBiasGradient` (adopted: the model's sdpa path on CPU, `attention_posattn.py`): the same flash forward, and
  the whole backward done once over blocks of query rows (FlashAttention-2's backward), which yields q, k, v and the
  bias gradient from one P per block.

One attention call (4 heads of 32, batch 1), forward + backward, interleaved in one process, median [min-max]:

    PYTHONPATH=$PWD python scripts/benchmark_bias_backward.py --length 2048 --rounds 5
"""

import argparse
import time

import numpy as np
import torch

from modeling_posattn.attention_posattn import BIAS_GRADIENT_BLOCK_ELEMENTS, SdpaWithBiasGradient


class FlashAttentionWithBiasGradient(torch.autograd.Function):
    """softmax(q k^T s + bias) v with the CPU flash kernel, and the bias gradient computed from its log-sum-exp."""

    @staticmethod
    def forward(ctx, query, key, value, bias, scale):
        output, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=bias, scale=scale
        )
        ctx.save_for_backward(query, key, value, bias, output, logsumexp)
        ctx.scale = scale
        return output

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, bias, output, logsumexp = ctx.saved_tensors
        grad_query, grad_key, grad_value = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_output, query, key, value, output, logsumexp, 0.0, False, attn_mask=bias, scale=ctx.scale
        )
        batch, heads, length, dim = query.shape
        flat = batch * heads

        def rows(tensor):
            return tensor.reshape(flat, length, -1)

        scores = torch.baddbmm(rows(bias), rows(query), rows(key).transpose(1, 2), alpha=ctx.scale)
        probabilities = scores.sub_(logsumexp.reshape(flat, length, 1)).exp_()
        delta = (grad_output * output).sum(-1).reshape(flat, length, 1)
        grad_scores = torch.bmm(rows(grad_output), rows(value).transpose(1, 2)).sub_(delta)
        grad_bias = probabilities.mul_(grad_scores).view(batch, heads, length, length)
        return grad_query, grad_key, grad_value, grad_bias, None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    heads, dim, scale = 4, 32, 32**-0.5
    query, key, value = (torch.randn(1, heads, args.length, dim, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, heads, args.length, args.length, requires_grad=True)
    inputs = (query, key, value, bias)

    def run(kind):
        for tensor in inputs:
            tensor.grad = None
        if kind == "none (flash, no bias)":
            output = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=scale)
        elif kind == "trainable bias, sdpa (math path)":
            output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)
        elif kind == kinds[2]:
            output = FlashAttentionWithBiasGradient.apply(query, key, value, bias, scale)
        else:
            rows = max(1, BIAS_GRADIENT_BLOCK_ELEMENTS // (heads * args.length))
            output = SdpaWithBiasGradient.apply(query, key, value, bias, scale, rows)
        output.square().sum().backward()
        return output.detach(), [t.grad for t in inputs]

    kinds = ["none (flash, no bias)", "trainable bias, sdpa (math path)", "trainable bias, flash + own bias gradient",
             "trainable bias, flash forward + own blocked backward (adopted)"]
    reference = run(kinds[1])
    for kind in kinds[2:]:
        candidate = run(kind)
        pairs = zip([reference[0], *reference[1]], [candidate[0], *candidate[1]])
        error = max((a - b).abs().max().item() for a, b in pairs)
        print(f"largest difference, output and gradients, {kind} vs math path: {error:.1e}")
    times = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            start = time.perf_counter()
            run(kind)
            times[kind].append(time.perf_counter() - start)
    base = np.array(times[kinds[0]])
    for kind in kinds:
        ratio = np.array(times[kind]) / base
        print(f"{kind}: {np.median(times[kind]):.3f} s, {np.median(ratio):.2f}x none [{ratio.min():.2f}-{ratio.max():.2f}]")


if __name__ == "__main__":
    main()

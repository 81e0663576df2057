r"""Time-split attention: exact attention with an ALiBi or relative-bucket bias on long sequences, on CPU, with no
L x L tensor and mostly without a bias in the kernel.

In time order, every key before a block of queries is behind all of them, and there the bias splits into a key term
and a row term: ALiBi's $-s|t_j - t_i| = s(t_j - t_r) - s(t_i - t_r)$, and a relative bucket's, far enough back, is
one constant. Each block of queries (`split_query_rows` of the encoding; `split_query_rows_inference` without gradients)
thus attends to three ranges of keys with the flash kernel: the keys far before it (the key term as a
`(heads, 1, keys)` mask, or none), the near keys (the bias itself, a small `(heads, rows, keys)` block), the keys far
after it; the three softmaxes are merged by their log-sum-exp plus the row term. The backward pass calls the flash
backward on each range with the merged output and log-sum-exp (FlashAttention-2's split of the softmax, Dao 2023), so
each range's gradient is its part of the whole softmax's; the near range's bias gradient comes from
`biased_attention_backward` and goes straight into the bias table.

The block structure depends on the data (the time order, the near keys), so it is planned once per forward with one
host sync (`time_split_bias`); eager, FlexAttention, tracing and other devices keep their paths. Half-precision q, k, v
(autocast, or a half-precision model) are attended in float32: the merge of the ranges and every backward need each
range's exact output, which the flash kernel rounds to its inputs' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .attention_posattn import (
    BIAS_GRADIENT_BLOCK_ELEMENTS,
    FLASH_DTYPES,
    biased_attention_backward,
    own_cpu_paths_allowed,
    query_blocked_attention,
)
from .bias_posattn import QueryBlockedBias, attention_bias_for, query_blocked_bias
from .configuration_posattn import PosAttnConfig


def score_bias_for(encoding: nn.Module, positions, dtype: torch.dtype, config: PosAttnConfig, dropout: float):
    """The bias of a score-bias encoding under eager / sdpa: time-split for long sequences under CPU sdpa without
    attention dropout (the flash kernel's CPU entry points; float32, or half precision under autocast or in a
    half-precision model), else dense or over blocks of query rows (`attention_bias_for`)."""
    if (
        own_cpu_paths_allowed(positions.mask.device, dropout)  # first: not tracing (a traced length compared with
        # the threshold would become a guard on it)
        and config._attn_implementation == "sdpa"
        and dtype in FLASH_DTYPES
        and config.time_split_min_length is not None
        and positions.mask.shape[1] >= config.time_split_min_length
    ):
        return time_split_bias(query_blocked_bias(encoding, positions, dtype, config), config)
    return attention_bias_for(encoding, positions, dtype, config)


@dataclass
class SampleSplit:
    """One sample's plan: its real tokens in time order and, per block of queries, `(start, end, near_start, near_end)`
    in that order (the keys before `near_start` and from `near_end` on are far)."""

    order: torch.Tensor | None  # None: the sample is unpadded and already in time order
    times: torch.Tensor
    blocks: list[tuple[int, int, int, int]]
    budget: StepCacheBudget | None  # None in inference
    pair_keys: dict = field(default_factory=dict)  # block -> the encoding's `pair_key` of its near keys
    near_biases: dict = field(default_factory=dict)  # block -> their bias

    def pair_key(self, encoding: nn.Module, block: tuple[int, int, int, int]) -> torch.Tensor:
        """The encoding's per-pair data for the block's near keys (ALiBi's biases, or rows of the bias table), kept for
        the training step within the budget (every layer's forward and backward use it: 2 x layers times)."""
        if block in self.pair_keys:
            return self.pair_keys[block]
        start, end, near_start, near_end = block
        with torch.no_grad():
            pair_key = encoding.pair_key(self.times[start:end], self.times[near_start:near_end])
        if self.budget is not None and self.budget.admits(pair_key):
            self.pair_keys[block] = pair_key
        return pair_key

    def near_bias(self, encoding: nn.Module, block: tuple[int, int, int, int], table: torch.Tensor | None):
        """`(heads, rows, near keys)` bias of the block's near keys, kept like `pair_key` (the bias table does not
        change between a step's forward and backward); built anew where it must be differentiable (the second pass of
        a gradient penalty)."""
        pair_key = self.pair_key(encoding, block)
        if table is not None and table.requires_grad and torch.is_grad_enabled():
            return encoding.pair_bias(pair_key, table)
        if block in self.near_biases:
            return self.near_biases[block]
        bias = encoding.pair_bias(pair_key, table)
        if bias is not pair_key and self.budget is not None and self.budget.admits(bias):
            self.near_biases[block] = bias
        return bias


@dataclass
class StepCacheBudget:
    """Bytes of per-pair data a training step may keep across layers: `config.dense_bias_max_bytes`, so the time split
    never holds more bias than the dense path may build at once (and memory stays linear in L past it)."""

    bytes_left: int

    def admits(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` fits in what is left, which it then takes."""
        size = tensor.numel() * tensor.element_size()
        if size > self.bytes_left:
            return False
        self.bytes_left -= size
        return True


@dataclass
class TimeSplitBias(QueryBlockedBias):
    """A `QueryBlockedBias` (the path it falls back to) with the time-split plan of every sample."""

    samples: list[SampleSplit] = field(default_factory=list)


def time_split_bias(blocked: QueryBlockedBias, config: PosAttnConfig) -> TimeSplitBias:
    """The time-split plan of a batch, with one host sync for all samples and blocks."""
    encoding, positions = blocked.encoding, blocked.positions
    mask, times = positions.mask, positions.timestamps
    batch, length = mask.shape
    training = torch.is_grad_enabled()  # then each layer's forward and backward reuse the per-pair data
    rows = encoding.split_query_rows if training else encoding.split_query_rows_inference
    # padding sorts last, at a finite time (an infinite one would make inf - inf below)
    ordered_times, order = times.masked_fill(~mask, torch.finfo(times.dtype).max).sort(dim=1, stable=True)
    lengths = mask.sum(1, keepdim=True)
    starts = torch.arange(0, length, rows, device=mask.device).expand(batch, -1)
    ends = torch.minimum(starts + rows, lengths)
    near_start, near_end = near_bounds(encoding, ordered_times, lengths, starts, ends)
    in_order = ((order == torch.arange(length, device=mask.device)).all(1, keepdim=True) & (lengths == length)).long()
    plan = torch.cat((lengths, in_order, starts, ends, near_start, near_end), dim=1).tolist()
    budget = StepCacheBudget(config.dense_bias_max_bytes) if training else None
    samples = []
    for sample, (count, already_ordered, *bounds) in enumerate(plan):
        columns = len(bounds) // 4
        blocks = [
            tuple(bounds[column + part * columns] for part in range(4))
            for column in range(columns)
            if bounds[column] < count
        ]
        sample_order = None if already_ordered else order[sample, :count]
        samples.append(SampleSplit(sample_order, ordered_times[sample, :count], blocks, budget))
    return TimeSplitBias(**vars(blocked), samples=samples)


def near_bounds(encoding: nn.Module, ordered_times, lengths, starts, ends) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, blocks)` first and end index of each block's near keys in time order: the block itself for ALiBi; for a
    relative bias also the keys that are not yet in a far end bucket for some query of the block."""
    bounds = encoding.far_index_bounds()
    if bounds is None:
        return starts, ends
    last_before, first_after = bounds
    length = ordered_times.shape[1]
    real = (torch.arange(length, device=ordered_times.device) < lengths).unsqueeze(1)
    first = ordered_times.gather(1, starts).unsqueeze(2)
    last = ordered_times.gather(1, (ends - 1).clamp(0, length - 1)).unsqueeze(2)
    # the same float operations as the dense bias: a key is far from the whole block iff it is from the first (or
    # last) query, since rounding is monotone
    before = (encoding.table_index(ordered_times.unsqueeze(1) - first) <= last_before) & real
    after = (encoding.table_index(ordered_times.unsqueeze(1) - last) >= first_after) & real
    return torch.minimum(before.sum(-1), starts), torch.maximum(lengths - after.sum(-1), ends)


def runs_time_split(query: torch.Tensor, dropout: float) -> bool:
    """The flash kernel's CPU entry points, on the package's own CPU paths (half precision is attended in float32)."""
    return query.dtype in FLASH_DTYPES and own_cpu_paths_allowed(query.device, dropout)


def time_split_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: None,
    scaling: float,
    attention_bias: TimeSplitBias,
    dropout: float = 0.0,
    **kwargs,
):
    """Time-split attention per sample, its output `(B, L, heads, d)` back in the batch's token order (zero on padding).
    Off its path (`runs_time_split`), attention over blocks of query rows."""
    if not runs_time_split(query, dropout):
        return query_blocked_attention(module, query, key, value, None, scaling, attention_bias, dropout, **kwargs)
    encoding, length, dtype = attention_bias.encoding, query.shape[2], query.dtype
    # in float32 (exact: see the module's docstring; also faster here in training, torch's CPU flash backward being
    # slower in bfloat16 than in float32); the casts are differentiable, so gradients reach q, k, v in their dtype
    query, key, value = (tensor.float() for tensor in (query, key, value))
    table = encoding.bias_table()
    if table is not None:
        table = table.float()
    outputs = []
    for sample, split in enumerate(attention_bias.samples):
        if split.order is None:
            inputs = (tensor[sample : sample + 1] for tensor in (query, key, value))
        else:
            inputs = (tensor[sample].index_select(1, split.order).unsqueeze(0) for tensor in (query, key, value))
        output = TimeSplitAttention.apply(*inputs, table, encoding, split, scaling)[0].transpose(0, 1)
        if split.order is not None:
            output = output.new_zeros(length, *output.shape[1:]).index_copy(0, split.order, output)
        outputs.append(output)
    return torch.stack(outputs).to(dtype), None


@dataclass
class KeyRange:
    """One range of keys of a block of queries, with its bias: `mask` in the kernel plus `row` on the log-sum-exp."""

    keys: slice
    mask: torch.Tensor | None
    row: torch.Tensor | None
    side: str  # "before", "near" or "after"


def key_ranges(encoding: nn.Module, split: SampleSplit, block: tuple[int, int, int, int], table: torch.Tensor | None):
    """The (up to) three key ranges of a block of queries, their biases built from `table`."""
    start, end, near_start, near_end = block
    query_times, times = split.times[start:end], split.times
    if near_start > 0:
        key_term, row = encoding.side_terms(query_times, times[:near_start], True, table)
        yield KeyRange(slice(0, near_start), as_mask(key_term), row.flatten(1), "before")
    near = split.near_bias(encoding, block, table)
    yield KeyRange(slice(near_start, near_end), near.unsqueeze(0), None, "near")
    if near_end < len(times):
        key_term, row = encoding.side_terms(query_times, times[near_end:], False, table)
        yield KeyRange(slice(near_end, len(times)), as_mask(key_term), row.flatten(1), "after")


def as_mask(key_term: torch.Tensor | None) -> torch.Tensor | None:
    return None if key_term is None else key_term.unsqueeze(0)


class TimeSplitAttention(torch.autograd.Function):
    """`softmax(q k^T s + b) v` for one sample in time order, `(1, heads, n, d)`, its bias `b` given by the encoding
    and the bias `table` (None for ALiBi) through the sample's plan; see the module's docstring."""

    @staticmethod
    def forward(ctx, query, key, value, table, encoding, split: SampleSplit, scale: float):
        output = query.new_empty(query.shape)
        logsumexp = query.new_empty(query.shape[:3])
        table_gradient = table is not None and table.requires_grad
        far_parts = []  # each far range's own output and log-sum-exp, for its row term's gradient
        for block in split.blocks:
            rows = slice(block[0], block[1])
            parts = []
            for keys in key_ranges(encoding, split, block, table):
                part, part_logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    query[:, :, rows], key[:, :, keys.keys], value[:, :, keys.keys], attn_mask=keys.mask, scale=scale
                )
                if keys.row is not None:
                    part_logsumexp = part_logsumexp + keys.row
                    if table_gradient:
                        far_parts.append((part, part_logsumexp))
                parts.append((part, part_logsumexp))
            output[:, :, rows], logsumexp[:, :, rows] = merged(parts)
        ctx.save_for_backward(query, key, value, table, output, logsumexp)
        ctx.encoding, ctx.split, ctx.scale, ctx.far_parts = encoding, split, scale, far_parts
        return output

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, table, output, logsumexp = ctx.saved_tensors
        if torch.is_grad_enabled():
            return differentiable_backward(ctx, grad_output)
        encoding, split = ctx.encoding, ctx.split
        grad_query, grad_key, grad_value = (torch.zeros_like(tensor) for tensor in (query, key, value))
        grad_table = torch.zeros_like(table) if table is not None and ctx.needs_input_grad[3] else None
        far_parts = iter(ctx.far_parts)
        for block in split.blocks:
            rows = slice(block[0], block[1])
            block_tensors = (grad_output[:, :, rows], output[:, :, rows], logsumexp[:, :, rows])
            for keys in key_ranges(encoding, split, block, table.detach() if table is not None else None):
                operands = (query[:, :, rows], key[:, :, keys.keys], value[:, :, keys.keys])
                far_part = next(far_parts) if keys.row is not None and grad_table is not None else None
                grads = key_range_backward(ctx, block, keys, operands, *block_tensors, grad_table, far_part)
                grad_query[:, :, rows] += grads[0]
                grad_key[:, :, keys.keys] += grads[1]
                grad_value[:, :, keys.keys] += grads[2]
        return grad_query, grad_key, grad_value, grad_table, None, None, None


def merged(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The output and log-sum-exp of one softmax over all key ranges, from each range's own `(output, logsumexp)`."""
    logsumexp = torch.logsumexp(torch.stack([part_logsumexp for _, part_logsumexp in parts]), dim=0)
    output = sum(part * (part_logsumexp - logsumexp).exp().unsqueeze(-1) for part, part_logsumexp in parts)
    return output, logsumexp


def key_range_backward(ctx, block, keys: KeyRange, operands, grad_output, output, logsumexp, grad_table, far_part):
    """`(dq, dk, dv)` of one key range's part of a block's softmax (from the merged `output` and `logsumexp`); adds the
    range's bias gradient into `grad_table` when there is one: the near bias's through the encoding, a far constant's
    from the range's own output and log-sum-exp (`far_part`)."""
    encoding, split, scale = ctx.encoding, ctx.split, ctx.scale
    if keys.side == "near" and grad_table is not None:
        block_rows = max(1, BIAS_GRADIENT_BLOCK_ELEMENTS // (output.shape[1] * keys.mask.shape[-1]))
        *grads, grad_bias = biased_attention_backward(
            grad_output, *operands, keys.mask, output, logsumexp, scale, block_rows
        )
        encoding.pair_bias_backward(split.pair_key(encoding, block), grad_bias[0], grad_table)
        return grads
    part_logsumexp = logsumexp if keys.row is None else logsumexp - keys.row
    grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_output, *operands, output, part_logsumexp, 0.0, False, attn_mask=keys.mask, scale=scale
    )
    if far_part is not None:
        row_grad = row_gradient(grad_output, output, logsumexp, *far_part)[0]
        encoding.side_terms_backward(row_grad, keys.side == "before", grad_table)
    return grads


def row_gradient(grad_output, output, logsumexp, part, part_logsumexp) -> torch.Tensor:
    r"""`(1, heads, rows)` gradient of a term added to every score of a key range: $\sum_j dS_{ij}$ over the range,
    $w_i (dO_i \cdot O^{part}_i - dO_i \cdot O_i)$ with $w_i$ the range's share of the row's softmax."""
    share = (part_logsumexp - logsumexp).exp()
    return share * (grad_output * (part - output)).sum(-1)


def differentiable_backward(ctx, grad_output):
    """Under `create_graph=True` (a gradient penalty): the gradients by autograd through SDPA's math path, block by
    block with each block's full bias row built differentiably from the table, so they can be differentiated again."""
    query, key, value, table, _, _ = ctx.saved_tensors
    outputs = []
    for block in ctx.split.blocks:
        rows = slice(block[0], block[1])
        biases = []
        for keys in key_ranges(ctx.encoding, ctx.split, block, table):
            count = keys.keys.stop - keys.keys.start
            bias = keys.mask if keys.mask is not None else query.new_zeros(1, query.shape[1], 1, count)
            biases.append(bias if keys.row is None else bias + keys.row.unsqueeze(-1))
        bias = torch.cat([bias.expand(1, query.shape[1], rows.stop - rows.start, -1) for bias in biases], dim=-1)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            attention = nn.functional.scaled_dot_product_attention
            outputs.append(attention(query[:, :, rows], key, value, attn_mask=bias, scale=ctx.scale))
    needed = ctx.needs_input_grad[:4]
    wanted = [tensor for tensor, need in zip((query, key, value, table), needed) if need]
    grads = iter(torch.autograd.grad(torch.cat(outputs, dim=2), wanted, grad_output, create_graph=True))
    return (*(next(grads) if need else None for need in needed), None, None, None)

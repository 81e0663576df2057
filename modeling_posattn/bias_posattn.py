"""Score-bias position encodings of PosAttn: ALiBi and T5-style relative buckets over time, each a bias added to the
attention scores. Under eager / sdpa the bias is a dense `(B, heads, L, L)` float mask, or built one block of query rows
at a time when that would be large (`QueryBlockedBias`, see `attention_posattn.py`); under FlexAttention it is a
`score_mod` with no L x L tensor. `positional_encodings.RELATIVE_POSITION_ENCODINGS` registers the two encodings."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .configuration_posattn import PosAttnConfig


if TYPE_CHECKING:
    from .positional_encodings import TokenPositions


class ALiBiPositionBias(nn.Module):
    r"""ALiBi (Press et al., 2022): a per-head linear penalty on distance, here distance in time across modalities.

    $b_h(i, j) = -s_h\,|t_j - t_i|\,u$ with $u$ = `time_units_per_second` and slopes $s_h = 2^{-8(h+1)/H}$.
    """

    kind = "bias"

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.slopes = nn.Buffer(self.initial_buffers()["slopes"], persistent=False)
        self.time_units_per_second = config.time_units_per_second

    def initial_buffers(self) -> dict[str, torch.Tensor]:
        heads = torch.arange(1, self.num_heads + 1, dtype=torch.float32)
        return {"slopes": 2.0 ** (-8.0 * heads / self.num_heads)}

    def score(self, time_delta: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return -self.slopes[head] * (time_delta * self.time_units_per_second).abs()

    def dense_bias(self, time_delta: torch.Tensor, padding_keys: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """`(B, heads, rows, L)` biases of fresh `(B, 1, rows, L)` time differences, -inf on padding keys (`None`: the
        batch has none).

        The distance is computed and masked once for all heads (at +inf, so that `-slope * inf = -inf`): one pass over
        the heads-sized tensor instead of three (product, cast, mask)."""
        distance = time_delta.abs_().mul_(self.time_units_per_second).to(dtype)
        if padding_keys is not None:
            distance = distance.masked_fill_(padding_keys, float("inf"))
        return distance * -self.slopes.to(dtype).view(1, -1, 1, 1)

    # Time-split attention (`split_attention_posattn.py`): the near keys of a block of queries are the block itself;
    # larger blocks mean fewer kernel calls but more pairs with a dense bias, which training builds once per step and
    # inference once per layer (fastest of 256-1024 at 4096 and 8192 tokens: 1024 in training, 256 in inference;
    # docs/speed_notes.md).
    split_query_rows = 1024
    split_query_rows_inference = 256

    def far_index_bounds(self) -> None:
        """None: every key before (after) a block of queries is far before (after) it."""
        return None

    def bias_table(self) -> None:
        return None

    def pair_key(self, query_times: torch.Tensor, key_times: torch.Tensor) -> torch.Tensor:
        """`(heads, queries, keys)` biases of 1-D query and key times."""
        distance = (key_times[None, :] - query_times[:, None]).abs_().mul_(self.time_units_per_second)
        return distance * -self.slopes.view(-1, 1, 1)

    def pair_bias(self, bias: torch.Tensor, table: None) -> torch.Tensor:
        """`pair_key` holds the biases themselves: nothing is learned."""
        return bias

    def side_terms(self, query_times: torch.Tensor, key_times: torch.Tensor, before: bool, table: None):
        r"""`(key term (heads, 1, keys), row term (heads, queries, 1))` summing to the bias when every key is on one side
        of every query (`before`: $t_j \le t_i$), since then $|t_j - t_i| = \pm(t_j - t_r) \mp (t_i - t_r)$. The reference
        $t_r$ is the query nearest to the keys, so that the near keys' terms are small (exact in low precision too)."""
        rate = self.slopes.view(-1, 1) * (self.time_units_per_second if before else -self.time_units_per_second)
        reference = query_times[0] if before else query_times[-1]
        return (rate * (key_times - reference)).unsqueeze(1), (-rate * (query_times - reference)).unsqueeze(2)

    def side_terms_backward(self, row_grad: torch.Tensor, before: bool, table_grad: None) -> None:
        """The slopes are fixed: nothing to accumulate."""


class RelativeTimeBias(nn.Module):
    r"""A learned per-head bias over log-bucketed time distance, as in T5 (Raffel et al., 2020).

    $b_h(i, j) = B[\mathrm{bucket}(n_{ij}), h]$ with $n_{ij} = \lfloor (t_j - t_i)\,u + 1/2 + \epsilon \rfloor$ the
    distance in time units (rounded half up; $\epsilon$ = `TIE_TOLERANCE` units absorbs the float error of timestamps
    far from zero, so that a distance on a rounding tie, such as 20 ms at 25 units per second, lands in the same bucket
    whatever the clock's origin). Distances below `max_exact` = `num_buckets // 4` get a bucket each; distances from
    `max_exact` to `relative_attention_max_distance` are log-spaced over the remaining buckets of their direction; all
    longer distances share the direction's last bucket (also when `max_distance <= max_exact`: then no log range).

    The bucket of every clamped integer distance is precomputed in a small table (`bucket_table`), so the forward pass
    is an int32 index into `(2 D + 1, heads)` biases: no float `log` and no int64 L x L tensor.
    """

    kind = "bias"
    TIE_TOLERANCE = 1e-3

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        if self.num_buckets < 2 or self.max_distance < 1:
            raise ValueError(
                "`relative_bias` needs `relative_attention_num_buckets` >= 2 and `relative_attention_max_distance` >= 1, "
                f"got {self.num_buckets} and {self.max_distance}."
            )
        self.time_units_per_second = config.time_units_per_second
        self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_attention_heads)
        self.bucket_table = nn.Buffer(self.initial_buffers()["bucket_table"], persistent=False)
        self.clamp_distance = (self.bucket_table.numel() - 1) // 2

    # Time-split attention (`split_attention_posattn.py`): a block's near keys span its own time plus the bucket range
    # on either side, so smaller blocks have fewer near pairs, down to where kernel calls cost more (256 was fastest
    # of 256-1024 from 1024 to 4096 tokens, in training and inference, within 3% at 8192; docs/speed_notes.md).
    split_query_rows = split_query_rows_inference = 256

    def far_index_bounds(self) -> tuple[int, int]:
        """`(last, first)`: the table rows up to `last` share row 0's bucket (keys far before a query), those from
        `first` on share the last row's (far after). Time-split attention treats such keys as one constant bias."""
        buckets = self.bucket_table.tolist()
        last = next(row for row, bucket in enumerate(buckets) if bucket != buckets[0]) - 1
        first = len(buckets) - next(row for row, bucket in enumerate(reversed(buckets)) if bucket != buckets[-1])
        return last, first

    def initial_buffers(self) -> dict[str, torch.Tensor]:
        return {"bucket_table": self.signed_bucket_table(self.num_buckets, self.max_distance)}

    @staticmethod
    def signed_bucket_table(num_buckets: int, max_distance: int) -> torch.Tensor:
        """`table[n + D]` = bucket of the signed integer distance `n` in `[-D, D]`, `D = max(max_distance, max_exact)`:
        T5's bucketing (`_relative_position_bucket`, bidirectional), evaluated once on every distance it distinguishes."""
        half = num_buckets // 2
        max_exact = half // 2
        clamp = max(max_distance, max_exact)
        distance = torch.arange(clamp + 1)
        if max_distance > max_exact >= 1:
            log_ratio = torch.log(distance.float().clamp_min(1) / max_exact) / math.log(max_distance / max_exact)
            far = (max_exact + log_ratio * (half - max_exact)).long().clamp_max(half - 1)
        else:  # no log-spaced range: everything past the exact buckets is "far"
            far = torch.full_like(distance, half - 1)
        magnitude = torch.where(distance < max_exact, distance, far)
        # negative distances (key before query) use buckets [0, half), positive ones [half, 2 half)
        return torch.cat((magnitude.flip(0), magnitude[1:] + half)).to(torch.int32)

    def bucket(self, time_delta: torch.Tensor) -> torch.Tensor:
        """int32 bucket of each time difference (seconds), any shape."""
        return self.bucket_table[self.table_index(time_delta)]

    def table_index(self, time_delta: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """int32 row of `bucket_table` for each time difference. `in_place` overwrites a fresh `time_delta` (the dense
        bias's L x L differences, where each new L x L tensor would cost as much in first-touch page faults as its pass);
        otherwise out of place (FlexAttention's `score_mod` traces it)."""
        offset, clamp = 0.5 + self.TIE_TOLERANCE, self.clamp_distance
        # clamp in float: a huge distance must not overflow the integer cast
        if in_place:
            units = time_delta.mul_(self.time_units_per_second).add_(offset).floor_().clamp_(-clamp, clamp).add_(clamp)
        else:
            units = torch.floor(time_delta * self.time_units_per_second + offset).clamp(-clamp, clamp) + clamp
        return units.to(torch.int32)

    def score(self, time_delta: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        # (2 D + 1, heads) biases, one row per clamped signed distance: a small gather, then one int32 index per pair
        return biases_at(self.relative_attention_bias(self.bucket_table), self.table_index(time_delta), head)

    def dense_bias(self, time_delta: torch.Tensor, padding_keys: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """`(B, heads, rows, L)` biases of fresh `(B, 1, rows, L)` time differences (overwritten), the dtype's minimum on
        padding keys (`None`: the batch has none)."""
        index = self.table_index(time_delta, in_place=True)
        biases = self.relative_attention_bias(self.bucket_table)
        if padding_keys is not None:
            # Padding keys look up one more row, the dtype's minimum: no float mask over the L x L bias, and none over
            # its gradient (a differentiable `masked_fill` clones it), and no gradient reaches the table from them.
            index.masked_fill_(padding_keys, biases.shape[0])
            biases = torch.cat((biases, biases.new_full((1, self.num_heads), torch.finfo(dtype).min)))
        # `bincount` has a data-dependent shape (no tracing) and on CUDA no deterministic kernel (full_determinism)
        if time_delta.device.type != "cpu" or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            bias = biases_at(biases, index, torch.arange(self.num_heads, device=index.device).view(1, -1, 1, 1))
        else:
            bias = HeadsFirstLookup.apply(biases, index)
        # looked up in the table's dtype, so that its gradient is summed in it too (a bfloat16 bias under autocast)
        return bias.to(dtype)


    # Time-split attention (`split_attention_posattn.py`): the bias over the `(2 D + 1, heads)` table of biases.
    def bias_table(self) -> torch.Tensor:
        return self.relative_attention_bias(self.bucket_table)

    def pair_key(self, query_times: torch.Tensor, key_times: torch.Tensor) -> torch.Tensor:
        """`(queries, keys)` int32 rows of the bias table for 1-D query and key times, shared by all heads."""
        return self.table_index(key_times[None, :] - query_times[:, None], in_place=True)

    def pair_bias(self, index: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """`(heads, queries, keys)` biases at `pair_key`'s rows of `table` (one `index_select` per head's column;
        differentiable when the table needs a gradient with gradients on: a gradient penalty's second pass)."""
        if torch.is_grad_enabled() and table.requires_grad:
            return table.t().index_select(1, index.view(-1)).view(-1, *index.shape)
        bias = table.new_empty(table.shape[1], *index.shape)
        for column, head_bias in zip(table.t().contiguous(), bias):
            torch.index_select(column, 0, index.view(-1), out=head_bias.view(-1))
        return bias

    def pair_bias_backward(self, index: torch.Tensor, grad: torch.Tensor, table_grad: torch.Tensor) -> None:
        """Adds the `(heads, queries, keys)` gradient of `pair_bias` into `table_grad` (a weighted `bincount` per head)."""
        rows = table_grad.shape[0]
        for head, head_grad in enumerate(grad):
            table_grad[:, head] += torch.bincount(index.view(-1), weights=head_grad.reshape(-1), minlength=rows)

    def side_terms(self, query_times: torch.Tensor, key_times: torch.Tensor, before: bool, table: torch.Tensor):
        """`(None, row term (heads, 1, 1))`: keys far before (`before`) or after every query share one bucket."""
        return None, table[0 if before else -1].view(-1, 1, 1)

    def side_terms_backward(self, row_grad: torch.Tensor, before: bool, table_grad: torch.Tensor) -> None:
        """Adds the gradient of the far keys' constant bias, from its `(heads, queries)` row gradient."""
        table_grad[0 if before else -1] += row_grad.sum(-1)


def biases_at(biases: torch.Tensor, index: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """`biases[index, head]` by advanced indexing (the traced and non-CPU lookup)."""
    # ONNX Runtime rejects an int32 index next to the int64 head index
    return biases[index.long() if torch.compiler.is_exporting() else index, head]


# A `(sample, head)` slice of the L x L bias or its gradient is worth its own call from about this many elements on: below
# it, the Python call of each slice costs more than the copy that working per head across samples makes.
SLICE_CALL_MIN_ELEMENTS = 2**15


class HeadsFirstLookup(torch.autograd.Function):
    """`table[index]` with the table's columns (heads) moved to dim 1: `(B, heads, ...)` from a `(entries, heads)`
    table and an int index of shape `(B, 1, ...)`. `index_select` (2x faster than advanced indexing on CPU), and a
    backward that sums the gradient per entry with weighted `bincount`s: autograd's `index_put_(accumulate=True)`
    scatter-adds one heads-row per pair, 6x slower at 4096 tokens. Large slices are worked on per `(sample, head)` in
    place (each contiguous: selected straight into the output, summed straight from the gradient); small ones per head
    across samples, where one call per slice would cost more than the copies (`SLICE_CALL_MIN_ELEMENTS`)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        per_sample = index.reshape(index.shape[0], -1)
        ctx.save_for_backward(per_sample, table)
        ctx.entries = table.shape[0]
        if per_sample.shape[1] < SLICE_CALL_MIN_ELEMENTS:
            shape = (index.shape[0], *index.shape[2:])
            return torch.stack([column.index_select(0, per_sample.view(-1)).view(shape) for column in table.t()], dim=1)
        output = table.new_empty(index.shape[0], table.shape[1], *index.shape[2:])
        for head, column in enumerate(table.t()):
            for sample, sample_index in enumerate(per_sample):
                torch.index_select(column, 0, sample_index, out=output[sample, head].view(-1))
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        per_sample, table = ctx.saved_tensors
        if torch.is_grad_enabled():
            # `create_graph=True`: autograd's own (differentiable) gradient of the lookup; `bincount` has no derivative
            heads = torch.arange(table.shape[1], device=table.device).view(1, -1, 1)
            lookup = table[per_sample.long().unsqueeze(1), heads]
            return torch.autograd.grad(lookup, table, grad_output.reshape(lookup.shape), create_graph=True)[0], None
        heads = range(grad_output.shape[1])
        if per_sample.shape[1] < SLICE_CALL_MIN_ELEMENTS:
            flat = per_sample.view(-1)
            columns = [torch.bincount(flat, weights=grad_output[:, head].reshape(-1), minlength=ctx.entries) for head in heads]
        else:
            grad_output = grad_output.contiguous()
            columns = [
                sum(
                    torch.bincount(sample_index, weights=grad_output[sample, head].view(-1), minlength=ctx.entries)
                    for sample, sample_index in enumerate(per_sample)
                )
                for head in heads
            ]
        return torch.stack(columns, dim=1).to(grad_output.dtype), None


def dense_attention_bias(
    encoding: nn.Module, positions: TokenPositions, dtype: torch.dtype, rows: slice = slice(None)
) -> torch.Tensor:
    """`(B, heads, L_rows, L)` float mask for the query rows `rows`: the encoding's bias on real keys, a score no real
    key can reach on padding keys (the dtype's minimum, or -inf).

    This is the sdpa/eager fallback; FlexAttention computes the same score inside the kernel (`flex_score_mod`), and
    `QueryBlockedBias` calls this one block of query rows at a time when the whole `(B, heads, L, L)` would be large.
    """
    times = positions.timestamps
    time_delta = (times[:, None, :] - times[:, rows, None]).unsqueeze(1)
    # no mask pass when the value checks' one host sync found no padding (unknown while tracing: masked)
    padding_keys = None if positions.padded is False else ~positions.mask[:, None, None, :]
    return encoding.dense_bias(time_delta, padding_keys, dtype)


@dataclass
class QueryBlockedBias:
    """A score bias built on demand, `block_size` query rows at a time, for attention whose dense `(B, heads, L, L)`
    bias would exceed `config.dense_bias_max_bytes` (see `query_blocked_attention` in `attention_posattn.py`)."""

    encoding: nn.Module
    positions: TokenPositions
    dtype: torch.dtype
    block_size: int
    checkpoint: bool

    def __call__(self, rows: slice) -> torch.Tensor:
        return dense_attention_bias(self.encoding, self.positions, self.dtype, rows)


def attention_bias_for(
    encoding: nn.Module, positions: TokenPositions, dtype: torch.dtype, config: PosAttnConfig
) -> torch.Tensor | QueryBlockedBias:
    """The dense bias when it fits in `config.dense_bias_max_bytes`, else a `QueryBlockedBias` whose blocks take about
    `config.attention_bias_block_bytes` each. Decided from shapes alone (no host sync, compile-friendly)."""
    length = positions.mask.shape[1]
    if bias_row_bytes(encoding, positions, dtype) * length <= config.dense_bias_max_bytes:
        return dense_attention_bias(encoding, positions, dtype)
    return query_blocked_bias(encoding, positions, dtype, config)


def query_blocked_bias(
    encoding: nn.Module, positions: TokenPositions, dtype: torch.dtype, config: PosAttnConfig
) -> QueryBlockedBias:
    """Blocks of about `config.attention_bias_block_bytes` of bias each."""
    rows = config.attention_bias_block_bytes // bias_row_bytes(encoding, positions, dtype)
    block_size = max(1, min(positions.mask.shape[1], rows))
    return QueryBlockedBias(encoding, positions, dtype, block_size, config.attention_bias_checkpoint)


def bias_row_bytes(encoding: nn.Module, positions: TokenPositions, dtype: torch.dtype) -> int:
    """Bytes of one query row of the `(B, heads, L, L)` bias."""
    batch, length = positions.mask.shape
    return batch * encoding.num_heads * length * torch.finfo(dtype).bits // 8


def flex_score_mod(encoding: nn.Module, positions: TokenPositions) -> Callable:
    """FlexAttention `score_mod` adding the encoding's bias and masking padding keys, with no L x L tensor."""
    times, mask = positions.timestamps, positions.mask

    def score_mod(score, batch, head, query_index, key_index):
        biased = score + encoding.score(times[batch, key_index] - times[batch, query_index], head)
        return torch.where(mask[batch, key_index], biased, -float("inf"))

    return score_mod

"""The positional-encoding family of PosAttn: absolute encodings, their fusion with content, and relative encodings.

Every encoding reads one [`TokenPositions`] record, built once per forward pass, so that index-based and time-based
encodings see the same tokens. Each is one small class behind one of three registries, selected by the config:

- `ABSOLUTE_POSITION_ENCODINGS[config.absolute_position_encoding]`: `(content, positions) -> (B, L, H)`;
- `POSITION_FUSIONS[config.position_fusion]`: `(content, encoding, modality_ids) -> (B, L, H)`;
- `RELATIVE_POSITION_ENCODINGS[config.relative_position_encoding]`: either rotary (returns `cos, sin` applied to q/k, so
  fused attention kernels still run; `rotary_posattn.py`) or a score bias (`dense_bias` for eager/sdpa, `score_mod` for
  FlexAttention).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .configuration_posattn import CLOCKLESS_STEP_SECONDS, PosAttnConfig
from .rotary_posattn import RotaryPositionEncoding, TimeRotaryPositionEncoding


@dataclass
class TokenPositions:
    """Where every token of a packed batch sits. All tensors are `(batch, seq_len)`.

    Attributes:
        position_ids: index of the token within its own modality in its sample (0 for padding).
        timestamps: time of the token in seconds on the sample's shared clock (0 for padding).
        modality_ids: index into `config.modality_names`.
        mask: True for real tokens.
        modality_lengths: number of real tokens of this token's modality in this sample.
        padded: whether any token is padding, when the eager value checks learned it in their one host sync; None
            while tracing (unknown: the mask is kept).
        num_positions: more than the largest `position_ids` of a real token, learned in the same sync; None while
            tracing.
    """

    position_ids: torch.Tensor
    timestamps: torch.Tensor
    modality_ids: torch.Tensor
    mask: torch.Tensor
    modality_lengths: torch.Tensor
    padded: bool | None = None
    num_positions: int | None = None


def modality_one_hot(modality_ids: torch.Tensor, mask: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """`(B, L, M)` indicator of each real token's modality."""
    one_hot = nn.functional.one_hot(modality_ids.clamp(0, num_modalities - 1), num_modalities)
    return one_hot * mask.unsqueeze(-1).long()


def default_position_ids(modality_ids: torch.Tensor, mask: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """Index of each token within its own modality, counting real tokens in sequence order (0 for padding)."""
    one_hot = modality_one_hot(modality_ids, mask, num_modalities)
    running = one_hot.cumsum(dim=1) - 1
    return (running * one_hot).sum(-1) * mask.long()


def default_timestamps(
    position_ids: torch.Tensor, modality_ids: torch.Tensor, mask: torch.Tensor, sampling_rates: list[float | None]
) -> torch.Tensor:
    """Each token's time in seconds when the user gives none.

    - A clocked modality at rate r: `t_i = i / r`.
    - A clockless modality (text) is spread evenly over the sample's duration, the end of its last clocked token:
      `t_i = (i + 1/2) * D / T`, with T the modality's length in that sample.
    - A sample with no clocked modality places clockless tokens one TMRoPE step (40 ms) apart: `t_i = 0.04 i`.
    """
    device = position_ids.device
    num_modalities = len(sampling_rates)
    rate = torch.tensor([r or 0.0 for r in sampling_rates], dtype=torch.float64, device=device).take(modality_ids)
    clocked = rate > 0
    position = position_ids.double()
    clocked_time = position / rate.clamp_min(1e-12)
    duration = torch.where(clocked & mask, (position + 1) / rate.clamp_min(1e-12), 0.0).amax(dim=1, keepdim=True)
    lengths = modality_one_hot(modality_ids, mask, num_modalities).sum(1).gather(1, modality_ids.clamp(0, num_modalities - 1))
    spread = (position + 0.5) * duration / lengths.clamp_min(1)
    clockless_time = torch.where(duration > 0, spread, position * CLOCKLESS_STEP_SECONDS)
    timestamps = torch.where(clocked, clocked_time, clockless_time)
    return torch.where(mask, timestamps, 0.0).float()


def sinusoids(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """`[sin(p w_k), cos(p w_k)]` with `w_k = base^(-2k/dim)`, for float positions of any shape: `(..., dim)`."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    angles = positions.float().unsqueeze(-1) * inv_freq
    return torch.cat((angles.sin(), angles.cos()), dim=-1)[..., :dim]


# ---------------------------------------------------------------------------------------------------------------------
# Absolute encodings
# ---------------------------------------------------------------------------------------------------------------------


class SinusoidalPositionEncoding(nn.Module):
    r"""Fixed sinusoids of the token's index within its own modality (Vaswani et al., 2017, "Attention Is All You Need").

    $p_{i,2k} = \sin(i\,\omega_k),\ p_{i,2k+1} = \cos(i\,\omega_k),\ \omega_k = 10000^{-2k/d}$, computed on the fly: no
    maximum length. This is the seed's "traditional" baseline, with its layout bug fixed (the seed indexed the batch).
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.dim = config.hidden_size

    def forward(self, content: torch.Tensor, positions: TokenPositions) -> torch.Tensor:
        return sinusoids(positions.position_ids, self.dim).to(content.dtype)

    def rows(self, content: torch.Tensor, positions: TokenPositions) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(table, index)` with `forward(...) == table[index]`: one row per position, when their number is known."""
        if positions.num_positions is None or positions.num_positions >= positions.mask.numel():
            return None  # unknown, or position ids far past the batch's tokens: per token is cheaper
        table = sinusoids(torch.arange(positions.num_positions, device=content.device), self.dim).to(content.dtype)
        return table, positions.position_ids


class LearnedPositionEncoding(nn.Module):
    r"""A learned table per modality (Devlin et al., 2019, BERT; Zerveas et al., 2021, TST): $p_i = E_m[i]$.

    The table has `config.max_position_embeddings` rows per modality; an index past it raises a `ValueError`.
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.max_positions = config.max_position_embeddings
        self.modality_names = config.modality_names
        self.table = nn.Embedding(config.num_modalities * self.max_positions, config.hidden_size)

    def forward(self, content: torch.Tensor, positions: TokenPositions) -> torch.Tensor:
        # Indices past the table are refused by the entry validation (`resolve_token_positions`, one sync per batch);
        # the clamp only keeps a traced graph (torch.compile / export, where validation is skipped) in bounds.
        return self.table(self.index(positions))

    def index(self, positions: TokenPositions) -> torch.Tensor:
        return positions.modality_ids * self.max_positions + positions.position_ids.clamp_max(self.max_positions - 1)

    def rows(self, content: torch.Tensor, positions: TokenPositions) -> tuple[torch.Tensor, torch.Tensor]:
        """`(table, index)` with `forward(...) == table[index]`."""
        return self.table.weight, self.index(positions)


class DynamicPositionEncoding(nn.Module):
    r"""Sinusoids whose frequencies follow each sequence's actual length: tAPE (Foumani et al., 2023, ConvTran).

    $p_{i,2k} = \sin(i\,\omega_k\,d/L),\ p_{i,2k+1} = \cos(i\,\omega_k\,d/L)$ with $L$ the length of the token's own
    modality in its own sample. The same index in sequences of different lengths gets a different encoding; there is
    no maximum length, and $L = 1$ is well defined. (Seed idea 1.)
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.dim = config.hidden_size

    def forward(self, content: torch.Tensor, positions: TokenPositions) -> torch.Tensor:
        scaled = positions.position_ids.float() * self.dim / positions.modality_lengths.clamp_min(1).float()
        return sinusoids(scaled, self.dim).to(content.dtype)


class ConditionalPositionEncoding(nn.Module):
    r"""A depthwise convolution of each modality's own tokens (Chu et al., 2023, CPVT; Baevski et al., 2020, wav2vec 2.0).

    $p_i = b_m + \sum_{o=-r}^{r} w_{m,o} \odot x_{i+o}\,[\text{$i+o$ is the next-by-$o$ real token of modality $m$}]$.

    The kernel runs as `k` shifted multiply-adds over the packed sequence; a neighbour counts only when it is a real
    token of the same modality at exactly index `i + o`, so neither padding nor another modality leaks in.
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.radius = config.conditional_kernel_size // 2
        self.weight = nn.Parameter(torch.zeros(config.num_modalities, config.conditional_kernel_size, config.hidden_size))
        self.bias = nn.Parameter(torch.zeros(config.num_modalities, config.hidden_size))

    @staticmethod
    def _shift(tensor: torch.Tensor, offset: int, fill) -> torch.Tensor:
        """`out[:, i] = tensor[:, i + offset]`, filled past the ends."""
        if offset == 0:
            return tensor
        shifted = torch.roll(tensor, -offset, dims=1)
        edge = slice(-offset, None) if offset > 0 else slice(None, -offset)
        shifted[:, edge] = fill
        return shifted

    def forward(self, content: torch.Tensor, positions: TokenPositions) -> torch.Tensor:
        modality_ids, position_ids = positions.modality_ids, positions.position_ids
        encoding = nn.functional.embedding(modality_ids, self.bias)
        for offset in range(-self.radius, self.radius + 1):
            neighbour_is_real = (
                self._shift(positions.mask, offset, False)
                & (self._shift(modality_ids, offset, -1) == modality_ids)
                & (self._shift(position_ids, offset, -1) == position_ids + offset)
            )
            neighbour = self._shift(content, offset, 0.0) * neighbour_is_real.unsqueeze(-1)
            encoding = encoding + nn.functional.embedding(modality_ids, self.weight[:, offset + self.radius]) * neighbour
        return encoding


class MultiScalePositionEncoding(nn.Module):
    r"""Continuous time in seconds over log-spaced frequency bands, with a learned gain per modality and band.

    $p(t)_m = [g_{m,k}\sin(2\pi t / P_k),\ g_{m,k}\cos(2\pi t / P_k)]_k$ (then a linear map if $2K \ne d$), with periods
    $P_k$ geometric from two frames of the fastest modality (its Nyquist period: a period of one frame is constant on
    the frame grid) to the longest sequence, `max_position_embeddings` frames of the slowest modality. All modalities
    share one time axis, so tokens of any two modalities at the same moment get the same encoding up to the gains.
    Fourier features as in Perceiver (Jaegle et al., 2021) over time as in TMRoPE (Qwen2.5-Omni, 2025). (Seed idea 2.)
    """

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        rates = [rate for rate in config.sampling_rates if rate] or [1.0 / CLOCKLESS_STEP_SECONDS]
        self.shortest_period = 2.0 / max(rates)
        self.longest_period = max(config.max_position_embeddings / min(rates), 2 * self.shortest_period)
        num_bands = self.num_bands = config.multiscale_num_bands
        self.angular_frequencies = nn.Buffer(self.initial_buffers()["angular_frequencies"], persistent=False)
        self.gain = nn.Parameter(torch.ones(config.num_modalities, num_bands))
        self.projection = None if 2 * num_bands == config.hidden_size else nn.Linear(2 * num_bands, config.hidden_size, bias=False)

    def initial_buffers(self) -> dict[str, torch.Tensor]:
        periods = torch.logspace(math.log10(self.shortest_period), math.log10(self.longest_period), self.num_bands)
        return {"angular_frequencies": 2 * math.pi / periods}

    def forward(self, content: torch.Tensor, positions: TokenPositions) -> torch.Tensor:
        angles = positions.timestamps.float().unsqueeze(-1) * self.angular_frequencies
        gain = nn.functional.embedding(positions.modality_ids, self.gain)
        encoding = torch.cat((gain * angles.sin(), gain * angles.cos()), dim=-1).to(content.dtype)
        return self.projection(encoding) if self.projection is not None else encoding


ABSOLUTE_POSITION_ENCODINGS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "sinusoidal": SinusoidalPositionEncoding,
    "learned": LearnedPositionEncoding,
    "dynamic": DynamicPositionEncoding,
    "conditional": ConditionalPositionEncoding,
    "multiscale": MultiScalePositionEncoding,
}


# ---------------------------------------------------------------------------------------------------------------------
# Fusion of an absolute encoding with content (seed idea 3)
# ---------------------------------------------------------------------------------------------------------------------


class AddFusion(nn.Module):
    r"""$x + p$ (Vaswani et al., 2017)."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()

    def forward(self, content: torch.Tensor, encoding: torch.Tensor, modality_ids: torch.Tensor) -> torch.Tensor:
        return content + encoding


class ConcatFusion(nn.Module):
    r"""$W[x; p] + b$: a learned projection of content and position side by side (as in Transformer-XL-style concat PE
    studies, e.g. Ke et al., 2021, TUPE, which argue against mixing them by addition)."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.projection = nn.Linear(2 * config.hidden_size, config.hidden_size)

    def forward(self, content: torch.Tensor, encoding: torch.Tensor, modality_ids: torch.Tensor) -> torch.Tensor:
        return self.projection(torch.cat((content, encoding), dim=-1))


class GatedFusion(nn.Module):
    r"""$x + \sigma(W_m[x; p] + b_m) \odot p$: a content-dependent gate per modality that decides, per token and
    channel, how much position to let in (gating as in highway networks, Srivastava et al., 2015)."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.gates = nn.ModuleList(nn.Linear(2 * config.hidden_size, config.hidden_size) for _ in config.modality_names)

    def forward(self, content: torch.Tensor, encoding: torch.Tensor, modality_ids: torch.Tensor) -> torch.Tensor:
        gate_logits = select_per_modality(self.gates, torch.cat((content, encoding), dim=-1), modality_ids)
        return content + torch.sigmoid(gate_logits) * encoding


POSITION_FUSIONS: dict[str, type[nn.Module]] = {"add": AddFusion, "concat": ConcatFusion, "gated": GatedFusion}


def select_per_modality(linears: nn.ModuleList, inputs: torch.Tensor, modality_ids: torch.Tensor) -> torch.Tensor:
    """`linears[m](inputs)` at every token of modality `m`, as one batched computation: the M linear maps stacked into
    one `(M * out, in)` matrix, applied to every token, and each token's own block picked by `torch.gather`.

    It costs M times the FLOPs of the per-modality calls, but has no boolean indexing (no data-dependent shapes, no host
    sync, no gather/scatter copies of the tokens): one graph for torch.compile and torch.export. M is the number of
    modalities (a handful); gathering a `(2H, H)` matrix per token instead would need L x 2H x H memory.
    """
    if len(linears) == 1:
        return linears[0](inputs)
    weight = torch.cat([linear.weight for linear in linears])
    bias = torch.cat([linear.bias for linear in linears])
    out_dim = linears[0].out_features
    every = nn.functional.linear(inputs, weight, bias).unflatten(-1, (len(linears), out_dim))  # (B, L, M, out)
    index = modality_ids.clamp(0, len(linears) - 1)[..., None, None].expand(*modality_ids.shape, 1, out_dim)
    return every.gather(-2, index).squeeze(-2)


# ---------------------------------------------------------------------------------------------------------------------
# Relative encodings
# ---------------------------------------------------------------------------------------------------------------------


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

    def dense_bias(self, time_delta: torch.Tensor, padding_keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`(B, heads, rows, L)` biases of fresh `(B, 1, rows, L)` time differences, -inf on padding keys.

        The distance is computed and masked once for all heads (at +inf, so that `-slope * inf = -inf`): one pass over
        the heads-sized tensor instead of three (product, cast, mask)."""
        distance = time_delta.abs_().mul_(self.time_units_per_second).to(dtype).masked_fill_(padding_keys, float("inf"))
        return distance * -self.slopes.to(dtype).view(1, -1, 1, 1)


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
        biases = self.relative_attention_bias(self.bucket_table)
        index = self.table_index(time_delta)
        if torch.compiler.is_exporting():  # ONNX Runtime rejects an int32 index next to the int64 head index
            index = index.long()
        return biases[index, head]

    def dense_bias(self, time_delta: torch.Tensor, padding_keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """`(B, heads, rows, L)` biases of fresh `(B, 1, rows, L)` time differences (overwritten), the dtype's minimum on
        padding keys."""
        # `bincount` has a data-dependent shape (no tracing) and on CUDA no deterministic kernel (full_determinism)
        if time_delta.device.type != "cpu" or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            heads = torch.arange(self.num_heads, device=time_delta.device).view(1, -1, 1, 1)
            bias = self.score(time_delta, heads)
        else:
            index = self.table_index(time_delta, in_place=True)
            bias = HeadsFirstLookup.apply(self.relative_attention_bias(self.bucket_table), index)
        # in place: `bias` is a fresh (B, H, rows, L) tensor, and a second one is what this fallback cannot afford
        return bias.to(dtype).masked_fill_(padding_keys, torch.finfo(dtype).min)


class HeadsFirstLookup(torch.autograd.Function):
    """`table[index]` with the table's columns (heads) moved to dim 1: `(B, heads, ...)` from a `(entries, heads)`
    table and an int index of shape `(B, 1, ...)`. One `index_select` per head (2x faster than advanced indexing on
    CPU), and a backward that sums the gradient per entry with one weighted `bincount` per sample and head: autograd's
    `index_put_(accumulate=True)` scatter-adds one heads-row per pair, 6x slower at 4096 tokens. Both work on each
    `(sample, head)` slice in place, which is contiguous: a per-head slice across samples would be copied first (and a
    stack of per-head results would copy the L x L bias once more)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        per_sample = index.reshape(index.shape[0], -1)
        ctx.save_for_backward(per_sample)
        ctx.entries = table.shape[0]
        output = table.new_empty(index.shape[0], table.shape[1], *index.shape[2:])
        for head, column in enumerate(table.t()):
            for sample, sample_index in enumerate(per_sample):
                torch.index_select(column, 0, sample_index, out=output[sample, head].view(-1))
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (per_sample,) = ctx.saved_tensors
        grad_output = grad_output.contiguous()
        columns = [
            sum(
                torch.bincount(sample_index, weights=grad_output[sample, head].view(-1), minlength=ctx.entries)
                for sample, sample_index in enumerate(per_sample)
            )
            for head in range(grad_output.shape[1])
        ]
        return torch.stack(columns, dim=1).to(grad_output.dtype), None


RELATIVE_POSITION_ENCODINGS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "rope": RotaryPositionEncoding,
    "time_rope": TimeRotaryPositionEncoding,
    "alibi": ALiBiPositionBias,
    "relative_bias": RelativeTimeBias,
}


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
    return encoding.dense_bias(time_delta, ~positions.mask[:, None, None, :], dtype)


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
    batch, length = positions.mask.shape
    row_bytes = batch * encoding.num_heads * length * torch.finfo(dtype).bits // 8
    if row_bytes * length <= config.dense_bias_max_bytes:
        return dense_attention_bias(encoding, positions, dtype)
    block_size = max(1, min(length, config.attention_bias_block_bytes // row_bytes))
    return QueryBlockedBias(encoding, positions, dtype, block_size, config.attention_bias_checkpoint)


def flex_score_mod(encoding: nn.Module, positions: TokenPositions) -> Callable:
    """FlexAttention `score_mod` adding the encoding's bias and masking padding keys, with no L x L tensor."""
    times, mask = positions.timestamps, positions.mask

    def score_mod(score, batch, head, query_index, key_index):
        biased = score + encoding.score(times[batch, key_index] - times[batch, query_index], head)
        return torch.where(mask[batch, key_index], biased, -float("inf"))

    return score_mod

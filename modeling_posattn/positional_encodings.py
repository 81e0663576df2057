"""The positional-encoding family of PosAttn: absolute encodings, their fusion with content, and relative encodings.

Every encoding reads one [`TokenPositions`] record, built once per forward pass, so that index-based and time-based
encodings see the same tokens. Each is one small class behind one of three registries, selected by the config:

- `ABSOLUTE_POSITION_ENCODINGS[config.absolute_position_encoding]`: `(content, positions) -> (B, L, H)`;
- `POSITION_FUSIONS[config.position_fusion]`: `(content, encoding, modality_ids, order=None, rows=None) -> (B, L, H)`
  (`order`: the batch in modality order, for per-modality maps as one grouped GEMM, `grouped_posattn.py`; `rows`: the
  encoding as `(table, index)`, `encoding == table[index]`, when it was computed once per table row);
- `RELATIVE_POSITION_ENCODINGS[config.relative_position_encoding]`: either rotary (returns `cos, sin` applied to q/k, so
  fused attention kernels still run; `rotary_posattn.py`) or a score bias (`bias_posattn.py`: `dense_bias` for
  eager/sdpa, `score_mod` for FlexAttention).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from .configuration_posattn import CLOCKLESS_STEP_SECONDS, PosAttnConfig
from .bias_posattn import (  # noqa: F401  (re-exported: the bias encodings lived here)
    ALiBiPositionBias,
    HeadsFirstLookup,
    QueryBlockedBias,
    RelativeTimeBias,
    attention_bias_for,
    dense_attention_bias,
    flex_score_mod,
)
from .grouped_posattn import ModalityOrder, aligned, bias_inputs, plain_module, stacked_affine
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
        token_counts: real tokens of each modality in the whole batch (a CLS token is none of them), learned in the same
            sync; None while tracing.
    """

    position_ids: torch.Tensor
    timestamps: torch.Tensor
    modality_ids: torch.Tensor
    mask: torch.Tensor
    modality_lengths: torch.Tensor
    padded: bool | None = None
    num_positions: int | None = None
    token_counts: tuple[int, ...] | None = None

    def with_leading_token(self) -> "TokenPositions":
        """Room for a CLS token at index 0, time 0 (it carries no modality; its modality id is unused)."""

        def pad(tensor, value):
            return nn.functional.pad(tensor, (1, 0), value=value)

        return TokenPositions(
            position_ids=pad(self.position_ids, 0),
            timestamps=pad(self.timestamps, 0.0),
            modality_ids=pad(self.modality_ids, 0),
            mask=pad(self.mask, True),
            modality_lengths=pad(self.modality_lengths, 1),
            padded=self.padded,
            num_positions=self.num_positions,
            token_counts=self.token_counts,
        )

    def mean_over_real_tokens(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(B, H)` mean of `(B, L, H)` states over each sample's real tokens; without padding (known from the value
        checks) a plain mean, which needs no `(B, L, H)` product. Either way summed in float32 or wider and divided by
        the exact count."""
        if self.padded is False:
            return hidden_states.mean(1)
        # as `mean` does in half precision: summed in float32, divided by the exact count (a bfloat16 sum of ones
        # rounds counts past 256)
        weights = self.mask.unsqueeze(-1).to(hidden_states.dtype)
        accumulate = torch.promote_types(hidden_states.dtype, torch.float32)
        counts = self.mask.sum(1, keepdim=True).to(accumulate)
        return ((hidden_states * weights).sum(1, dtype=accumulate) / counts).to(hidden_states.dtype)


def modality_one_hot(modality_ids: torch.Tensor, mask: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """`(B, L, M)` indicator of each real token's modality. A comparison with `arange(M)`, not `one_hot`, whose range
    check syncs with the device twice."""
    modalities = torch.arange(num_modalities, device=modality_ids.device)
    return ((modality_ids.clamp(0, num_modalities - 1).unsqueeze(-1) == modalities) & mask.unsqueeze(-1)).long()


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

    def rows(self, content: torch.Tensor, positions: TokenPositions) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(table, index)` with `forward(...) == table[index]`; None where the table is hooked or wrapped
        (`plain_module`): it is then called, per token."""
        if not plain_module(self.table, nn.Embedding):
            return None
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
        return self.encode(positions.timestamps, positions.modality_ids, content.dtype)

    def encode(self, times: torch.Tensor, modality_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        angles = times.float().unsqueeze(-1) * self.angular_frequencies
        gain = nn.functional.embedding(modality_ids, self.gain)
        encoding = torch.cat((gain * angles.sin(), gain * angles.cos()), dim=-1).to(dtype)
        return self.projection(encoding) if self.projection is not None else encoding

    def rows(self, content: torch.Tensor, positions: TokenPositions) -> tuple[torch.Tensor, ...] | None:
        """`(table, index, owners)` with `forward(...) == table[index]` and `owners` each row's modality: one row per
        distinct (modality, time) of the batch (samples on the same clocks share most of them), found by one sort of an
        exact int64 key (the modality and the float32 time's bits); None if no pair repeats. Eager CPU only
        (`num_positions` is known once the value checks ran, i.e. not while tracing): elsewhere `torch.unique` would
        cost a device sync or a data-dependent shape."""
        timestamps = positions.timestamps
        if positions.num_positions is None or timestamps.device.type != "cpu":
            return None
        bits = timestamps.float().view(torch.int32).long() & 0xFFFFFFFF
        distinct, index = torch.unique((positions.modality_ids.long() << 32) | bits, return_inverse=True)
        if distinct.numel() == index.numel():
            return None  # no time repeats (one sample, say): per token, without a gather
        times, owners = (distinct & 0xFFFFFFFF).int().view(torch.float32), distinct >> 32
        return self.encode(times, owners, content.dtype), index, owners


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

    def forward(
        self,
        content: torch.Tensor,
        encoding: torch.Tensor,
        modality_ids: torch.Tensor,
        order: ModalityOrder | None = None,
        rows: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        return content + encoding


class ConcatFusion(nn.Module):
    r"""$W[x; p] + b$: a learned projection of content and position side by side (as in Transformer-XL-style concat PE
    studies, e.g. Ke et al., 2021, TUPE, which argue against mixing them by addition)."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.projection = nn.Linear(2 * config.hidden_size, config.hidden_size)

    def forward(
        self,
        content: torch.Tensor,
        encoding: torch.Tensor,
        modality_ids: torch.Tensor,
        order: ModalityOrder | None = None,
        rows: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        projected = map_of_content_and_rows([self.projection], content, rows, modality_ids) if rows else None
        if projected is None:
            projected = self.projection(torch.cat((content, encoding), dim=-1))
        # in the content's dtype: under autocast the map comes out in half precision, and this output is the residual
        # stream every layer adds to (the add and gated fusions keep the content's float32 by type promotion)
        return projected.to(content.dtype)


class GatedFusion(nn.Module):
    r"""$x + \sigma(W_m[x; p] + b_m) \odot p$: a content-dependent gate per modality that decides, per token and
    channel, how much position to let in (gating as in highway networks, Srivastava et al., 2015)."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.gates = nn.ModuleList(nn.Linear(2 * config.hidden_size, config.hidden_size) for _ in config.modality_names)

    def forward(
        self,
        content: torch.Tensor,
        encoding: torch.Tensor,
        modality_ids: torch.Tensor,
        order: ModalityOrder | None = None,
        rows: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        gate_logits = map_of_content_and_rows(self.gates, content, rows, modality_ids, order) if rows else None
        if gate_logits is None:
            gate_logits = select_per_modality(self.gates, torch.cat((content, encoding), dim=-1), modality_ids, order)
        return torch.addcmul(content, torch.sigmoid(gate_logits), encoding)


POSITION_FUSIONS: dict[str, type[nn.Module]] = {"add": AddFusion, "concat": ConcatFusion, "gated": GatedFusion}


def map_of_content_and_rows(
    linears: list[nn.Linear],
    content: torch.Tensor,
    rows: tuple[torch.Tensor, ...],
    modality_ids: torch.Tensor,
    order: ModalityOrder | None = None,
) -> torch.Tensor | None:
    r"""`linears[m]([x; p])` at every token of modality m, with the encoding `p = table[index]` given by its `rows`:
    $W_m[x; p] + b_m = W^x_m x + (W^p_m t_r + b_m)$. The content half runs over the tokens (one map, or one grouped GEMM in
    modality `order`), the position half once per table row, then is gathered per token: no `[x; p]` copy, and a map
    over H columns per token instead of 2H. A row that belongs to one modality (`rows[2]`, multiscale's) goes through
    its own modality's map only (one grouped GEMM over the rows); a row of any modality's (a sinusoid of a position)
    through every modality's. None where that is not less work (as many row maps as tokens), the maps cannot be grouped,
    or a map is not a plain Linear (`plain_module`: an adapter or a hook keeps its own forward)."""
    table, index, *owners = rows
    count, hidden = len(linears), content.shape[-1]
    if not all(plain_module(linear, nn.Linear) for linear in linears):
        return None
    groupable = count == 1 or (order is not None and aligned(hidden, linears[0].out_features))
    row_maps = table.shape[0] * (1 if owners or count == 1 else count)
    if not groupable or row_maps >= modality_ids.numel():
        return None
    content_weights = [linear.weight[:, :hidden] for linear in linears]
    if count == 1:
        content_half = nn.functional.linear(content, content_weights[0])
    else:
        content_half = order.linear(content, torch.stack(content_weights))
    biases = torch.cat([linear.bias for linear in linears])
    if owners and count > 1:
        row_order = ModalityOrder.of(owners[0][None], count)
        position_weights = torch.stack([linear.weight[:, hidden:] for linear in linears])
        per_row = row_order.linear(table[None], position_weights)[0]
        per_row = per_row + nn.functional.embedding(owners[0], biases.view(count, -1))
        return content_half + nn.functional.embedding(index, per_row)
    position_weight = torch.cat([linear.weight[:, hidden:] for linear in linears])
    per_row = nn.functional.linear(table, position_weight, biases)  # (R, M * out): every row through every map
    token_rows = index if count == 1 else index * count + modality_ids.clamp(0, count - 1)
    return content_half + nn.functional.embedding(token_rows, per_row.view(-1, linears[0].out_features))


def select_per_modality(
    linears: nn.ModuleList, inputs: torch.Tensor, modality_ids: torch.Tensor, order: ModalityOrder | None = None
) -> torch.Tensor:
    """`linears[m](inputs)` at every token of modality `m`.

    Given the batch's `order` (eager CPU: `grouped_posattn.py`; built from these `modality_ids`), one grouped GEMM over
    the tokens in modality order: one map's cost. Otherwise, or where grouped_mm cannot take the output width (not a
    multiple of 8), as one batched computation: the M linear maps stacked into one `(M * out, in)` matrix,
    applied to every token, and each token's own block picked by `torch.gather`. That costs M times the FLOPs, but has
    no data-dependent shape: one graph for torch.compile and torch.export. (Gathering a `(2H, H)` matrix per token
    instead would need L x 2H x H memory.) Both read the maps' weights, so they run only where every map is a plain
    Linear (`plain_module`); a hooked or wrapped one (an adapter) is called as a module, each over every token.
    """
    if len(linears) == 1:
        return linears[0](inputs)
    if not all(plain_module(linear, nn.Linear) for linear in linears):
        every = torch.stack([linear(inputs) for linear in linears], dim=-2)  # (B, L, M, out)
        return pick_own_modality(every, modality_ids)
    out_dim = linears[0].out_features
    if order is not None and aligned(out_dim):
        columns = inputs.shape[-1]
        weights, biases = [linear.weight for linear in linears], [linear.bias for linear in linears]
        weight = stacked_affine(weights, biases, columns, out_dim, inputs)
        return order.linear(torch.cat((inputs, bias_inputs(inputs, columns)), dim=-1), weight)
    weight = torch.cat([linear.weight for linear in linears])
    bias = torch.cat([linear.bias for linear in linears])
    every = nn.functional.linear(inputs, weight, bias).unflatten(-1, (len(linears), out_dim))  # (B, L, M, out)
    return pick_own_modality(every, modality_ids)


def pick_own_modality(every: torch.Tensor, modality_ids: torch.Tensor) -> torch.Tensor:
    """`(B, L, out)`: each token's own modality's entry of `every`, `(B, L, M, out)`."""
    index = modality_ids.clamp(0, every.shape[-2] - 1)[..., None, None].expand(*modality_ids.shape, 1, every.shape[-1])
    return every.gather(-2, index).squeeze(-2)


RELATIVE_POSITION_ENCODINGS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "rope": RotaryPositionEncoding,
    "time_rope": TimeRotaryPositionEncoding,
    "alibi": ALiBiPositionBias,
    "relative_bias": RelativeTimeBias,
}

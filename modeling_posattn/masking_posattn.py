"""Span masks for masked-reconstruction pretraining of PosAttn (`PosAttnForPreTraining`).

Two modes, both over the packed token layout (`modality_ids`, `attention_mask`, `timestamps`), vectorised over the batch
(no per-token or per-sample Python loop) and restricted to real tokens:

- `per_modality`: contiguous spans inside each modality's run of tokens, placed independently per modality. Every real
  token starts a span of `span_length` tokens with probability `p = 1 - (1 - r) ** (1 / span_length)`, so that a token
  is covered by at least one span with probability `1 - (1 - p) ** span_length = r`: the expected fraction of masked
  tokens is the mask ratio `r` (wav2vec 2.0 draws span starts the same way, with p = 0.065 and spans of 10, which masks
  about 49% of the frames; Baevski et al. 2020). Spans stop at the end of their modality's run (no span crosses into
  another modality) and at padding; a modality's first `span_length - 1` tokens are covered a little less often, as in
  wav2vec 2.0.
- `time_aligned`: windows of *time* masked in every modality at once, as VideoMAE's tubes mask the same patch in every
  frame (Tong et al. 2022) and CAV-MAE-style joint audio-visual masking hides one moment in both streams. Time is cut
  into cells of `span_seconds / span_length`; cells start windows of `span_length` cells as above, and a token is
  masked when its timestamp falls in a masked cell, whatever its modality. The model cannot copy the hidden moment from
  another stream; it has to use the surrounding time, which is where time-aligned positions should matter.

In both modes a sample with at least 2 real tokens gets at least one masked span (one is forced at a random real token
when the draw masked none) and every sample keeps at least one visible real token (one is unmasked at random when the
draw hid all; a 1-token sample is never masked): a masked objective needs something to predict and something to
predict it from. A span longer than a modality's run
is clipped to it (documented fallback, never an error). `time_aligned` reads one scalar back from the device (the
number of time cells); pass precomputed `mask_positions` to the model to avoid it.
"""

import torch

from .configuration_posattn import CLOCKLESS_STEP_SECONDS, MASK_MODE_NAMES


def span_start_probability(mask_ratio: float, span_length: int) -> float:
    """Probability that a token (or time cell) starts a span, so that the expected masked fraction is `mask_ratio`."""
    return 1.0 - (1.0 - mask_ratio) ** (1.0 / span_length)


def _uniform(shape, device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def _random_choice(candidates: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One random index per row among the True entries of `candidates` (B, L); rows without any give index 0."""
    scores = _uniform(candidates.shape, candidates.device, generator).masked_fill(~candidates, -1.0)
    return scores.argmax(dim=1)


def _cover_spans(starts: torch.Tensor, segment_start: torch.Tensor, span_length: int) -> torch.Tensor:
    """Positions covered by a span of `span_length` from a start, spans clipped at the end of their segment.

    Position j is covered when a start i with `j - span_length < i <= j` lies in j's segment; it suffices to look at
    the most recent start (a running max of start indices), so this is O(L) with no L x L tensor.
    """
    index = torch.arange(starts.shape[1], device=starts.device).expand_as(starts)
    last_start = torch.where(starts, index, torch.full_like(index, -1)).cummax(dim=1).values
    return (last_start >= segment_start) & (index - last_start < span_length)


def _segment_start(modality_ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """For every position, the index where its run of same-modality real tokens begins (padding forms its own runs)."""
    key = torch.where(real, modality_ids, torch.full_like(modality_ids, -1))
    boundary = torch.ones_like(real)
    boundary[:, 1:] = key[:, 1:] != key[:, :-1]
    index = torch.arange(real.shape[1], device=real.device).expand_as(key)
    return torch.where(boundary, index, torch.zeros_like(index)).cummax(dim=1).values


def _at_least_one_each_way(
    masked: torch.Tensor, real: torch.Tensor, force: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Add the forced span (`force`: the mask of a span at a random real token) to samples with 2+ tokens and none
    masked, and unmask one random masked token of samples whose real tokens are all masked (a 1-token sample is never
    masked: nothing would be left to predict it from)."""
    none_masked = (real.sum(dim=1) >= 2) & ~(masked & real).any(dim=1)
    masked = masked | (none_masked[:, None] & force)
    all_masked = ~(real & ~masked).any(dim=1)
    reveal = torch.nn.functional.one_hot(_random_choice(masked & real, generator), masked.shape[1]).bool()
    return masked & ~(all_masked[:, None] & reveal) & real


def per_modality_span_mask(
    modality_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mask_ratio: float,
    span_length: int,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """`(B, L)` bool: contiguous spans of `span_length` tokens inside each modality's run, expected ratio `mask_ratio`."""
    real = attention_mask.bool()
    segment_start = _segment_start(modality_ids, real)
    starts = real & (_uniform(real.shape, real.device, generator) < span_start_probability(mask_ratio, span_length))
    masked = _cover_spans(starts, segment_start, span_length) & real
    forced_start = torch.nn.functional.one_hot(_random_choice(real, generator), real.shape[1]).bool()
    force = _cover_spans(forced_start, segment_start, span_length) & real
    return _at_least_one_each_way(masked, real, force, generator)


def time_cells(timestamps: torch.Tensor, cell_seconds: float) -> torch.Tensor:
    """The index of the `cell_seconds` time cell each token falls in, in float64 with a tolerance of 1e-6 cell, so that
    a frame exactly on a cell boundary (2.36 s / 0.04 s) lands in the same cell whatever its clock's rounding."""
    return torch.floor(timestamps.double().clamp(min=0) / cell_seconds + 1e-6).long()


def time_aligned_span_mask(
    timestamps: torch.Tensor,
    attention_mask: torch.Tensor,
    mask_ratio: float,
    span_length: int,
    span_seconds: float,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """`(B, L)` bool: windows of `span_seconds` masked in every modality at once, expected time ratio `mask_ratio`."""
    real = attention_mask.bool()
    cell_seconds = span_seconds / span_length
    cells = time_cells(timestamps, cell_seconds).masked_fill(~real, 0)  # (B, L)
    num_cells = int(cells.max()) + 1  # the one host read-back of this function
    probability = span_start_probability(mask_ratio, span_length)
    # Windows may start in cells without a token too (time passes between tokens); the whole grid is one segment.
    starts = _uniform((real.shape[0], num_cells), real.device, generator) < probability
    whole = torch.zeros_like(cells[:, :1]).expand(-1, num_cells)
    masked = _cover_spans(starts, whole, span_length).gather(1, cells) & real
    forced_cell = cells.gather(1, _random_choice(real, generator)[:, None])  # the cell of a random real token
    force = ((cells - forced_cell) >= 0) & ((cells - forced_cell) < span_length) & real
    return _at_least_one_each_way(masked, real, force, generator)


def default_span_seconds(config) -> float:
    """The time-aligned window when `config.mask_span_seconds` is None: `mask_span_length` ticks of the slowest clocked
    modality (so that every clocked stream loses at least a span of its tokens), or of the 40 ms clockless step."""
    if config.mask_span_seconds is not None:
        return float(config.mask_span_seconds)
    rates = [rate for rate in config.sampling_rates if rate]
    step = 1.0 / min(rates) if rates else CLOCKLESS_STEP_SECONDS
    return config.mask_span_length * step


def compute_mask_positions(
    config,
    modality_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    timestamps: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.BoolTensor:
    """The `(B, L)` mask of `config.mask_mode` with `config.mask_ratio` and `config.mask_span_length`."""
    if config.mask_mode == "per_modality":
        return per_modality_span_mask(modality_ids, attention_mask, config.mask_ratio, config.mask_span_length, generator)
    if config.mask_mode == "time_aligned":
        return time_aligned_span_mask(
            timestamps, attention_mask, config.mask_ratio, config.mask_span_length, default_span_seconds(config), generator
        )
    raise ValueError(f"`mask_mode` must be one of {MASK_MODE_NAMES}, got {config.mask_mode!r}.")


__all__ = [
    "compute_mask_positions",
    "default_span_seconds",
    "per_modality_span_mask",
    "span_start_probability",
    "time_aligned_span_mask",
]

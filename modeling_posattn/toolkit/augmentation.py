"""Training-time augmentation of raw multimodal samples (before `PosAttnProcessor`), for small time-series datasets.

Methods and default strengths follow Iwana & Uchida (2021, PLoS ONE, "An empirical survey of data augmentation for time
series classification with neural networks"; code uchidalab/time_series_augmentation) and Um et al. (2017): jitter,
per-channel scaling, smooth time warping, window slicing (Le Guennec et al., 2016), plus modality dropout.

One time transform is drawn per sample and applied to every clocked modality of it in normalised time, so modalities
of different rates stay aligned; clockless modalities (text, image rows) are never warped.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

TIME_WARP_KNOTS = 6  # speed knots of the smooth warp (4 interior + both ends, as the reference code's 4 knots)


@dataclass
class TimeSeriesAugmentation:
    r"""Randomly perturb a sample `{modality: (T, D) array, ..., "labels": y}`; all strengths 0 (or 1 for
    `window_slice`) leave it unchanged.

    Args:
        jitter: std of additive Gaussian noise, in units of each channel's std (`channel_std`).
        scaling: std of a per-channel multiplicative factor $\sim \mathcal{N}(1, \sigma)$.
        time_warp: std of the random speeds at the warp knots: the time map is $w(u) \propto \int_0^u s(v) dv$ with $s$
            interpolated from `TIME_WARP_KNOTS` speeds $\sim \mathcal{N}(1, \sigma)$ (clipped at 0.1, so monotone).
        window_slice: fraction of the sample kept by a random crop that is stretched back to the full length.
        modality_dropout: probability to drop each modality of a sample (at least one is always kept).
        channel_std: `{modality: per-channel std}` for `jitter` (e.g. `processor.normalization[m]["std"]`); 1 if absent.
        sampling_rates: `{modality: rate or None}`; modalities without a rate are not time-transformed.
    """

    jitter: float = 0.0
    scaling: float = 0.0
    time_warp: float = 0.0
    window_slice: float = 1.0
    modality_dropout: float = 0.0
    channel_std: Mapping[str, Any] | None = None
    sampling_rates: Mapping[str, float | None] | None = None

    def __post_init__(self):
        for name in ("jitter", "scaling", "time_warp"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}.")
        if not 0 < self.window_slice <= 1:
            raise ValueError(f"`window_slice` must be in (0, 1], got {self.window_slice!r}.")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError(f"`modality_dropout` must be in [0, 1), got {self.modality_dropout!r}.")

    @property
    def active(self) -> bool:
        return bool(self.jitter or self.scaling or self.time_warp or self.modality_dropout or self.window_slice < 1)

    def time_map(self, rng: np.random.Generator) -> np.ndarray:
        """Speeds at the knots and the crop start: what one sample's time transform needs."""
        start = rng.uniform(0, 1 - self.window_slice) if self.window_slice < 1 else 0.0
        speeds = np.clip(rng.normal(1.0, self.time_warp, TIME_WARP_KNOTS), 0.1, None) if self.time_warp else np.ones(TIME_WARP_KNOTS)
        return start, speeds

    def warp(self, frames: np.ndarray, start: float, speeds: np.ndarray) -> np.ndarray:
        """Resample `frames` (T, D) along the warped, cropped time map (linear interpolation, vectorised over T and D)."""
        length = len(frames)
        if length < 2:
            return frames
        grid = np.linspace(0, 1, length)
        warped = np.cumsum(np.interp(grid, np.linspace(0, 1, len(speeds)), speeds))
        warped = (warped - warped[0]) / max(warped[-1] - warped[0], 1e-12)
        positions = np.clip((start + self.window_slice * warped) * (length - 1), 0, length - 1)
        low = np.floor(positions).astype(int)
        high = np.minimum(low + 1, length - 1)
        weight = (positions - low)[:, None]
        return frames[low] * (1 - weight) + frames[high] * weight

    def __call__(self, sample: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        rates = self.sampling_rates or {}
        names = [k for k, v in sample.items() if k not in ("labels", "label", "timestamps") and v is not None]
        keep = [n for n in names if rng.random() >= self.modality_dropout] or [names[rng.integers(len(names))]]
        start, speeds = self.time_map(rng)
        out = {k: v for k, v in sample.items() if k not in names}
        if isinstance(sample.get("timestamps"), Mapping):
            out["timestamps"] = {k: v for k, v in sample["timestamps"].items() if k in keep}
        for name in keep:
            frames = np.asarray(sample[name])
            if frames.ndim != 2 or not np.issubdtype(frames.dtype, np.floating):  # token ids: untouched
                out[name] = sample[name]
                continue
            if rates.get(name, 1.0):
                frames = self.warp(frames, start, speeds)
            if self.scaling:
                frames = frames * rng.normal(1.0, self.scaling, (1, frames.shape[1]))
            if self.jitter:
                std = np.asarray((self.channel_std or {}).get(name, 1.0))
                frames = frames + rng.normal(0.0, self.jitter, frames.shape) * std
            out[name] = frames
        return out


__all__ = ["TimeSeriesAugmentation"]

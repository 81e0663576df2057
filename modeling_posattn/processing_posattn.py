"""PosAttnProcessor: raw per-modality arrays -> the packed token layout that `PosAttnModel.forward` takes."""

import math
import numbers
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .configuration_posattn import CLOCKLESS_STEP_SECONDS, MAX_FEATURE_MAGNITUDE, normalize_modality_spec
from .input_checks_posattn import (  # noqa: F401  (PACKED_KEYS re-exported: its former home)
    PACKED_KEYS,
    check_rows,
    checked_features,
    checked_times,
    checked_token_ids,
)
from .stems import stem_spec, token_feature_dim

RESERVED_KEYS = ("timestamps", "labels", "label")


class PosAttnProcessor(FeatureExtractionMixin):
    r"""
    Turns samples of named modalities into model inputs, like a tokenizer does for text.

    A sample is a dict mapping a modality name to an array (`T x input_dim` floats for a feature modality, a 1-D
    sequence of ints for a token modality), optionally with `"timestamps"` (a dict mapping a modality name to T times in
    seconds) and `"labels"`. A sample may lack modalities. Each sample becomes one packed sequence: the tokens of its
    modalities in `modality_names` order, each token with its modality id, its index within its modality and its time.

    Times not given are filled: a clocked modality at rate r puts frame i at `i / r`; a clockless one (text) is spread
    evenly over the sample's duration, `(i + 1/2) D / T`, or 40 ms apart when nothing in the sample has a clock.

    A modality whose stem has `stride` s > 1 is downsampled here: s consecutive frames (after normalisation) become one
    token holding the s frames concatenated (the last group zero-filled), timed at the mean time of its real frames, the
    centre of its receptive field, so time-aligned encodings stay aligned; `position_ids` then count tokens.
    `max_tokens` / `max_seconds` apply to these tokens.

    Args:
        modalities: the same spec as `PosAttnConfig.modalities`.
        modality_names: canonical order (defaults to the order of `modalities`).
        normalization: `{name: {"mean": [...], "std": [...]}}` per feature modality, usually set by [`fit`].
        max_tokens: an int for every modality, or `{name: int}`; longer modalities are truncated with a warning.
        max_seconds: a float for every modality, or `{name: float}`; tokens at or after that time are truncated with a
            warning.
    """

    # `modality_ids` first: it is the one input every packed row has (a token-only dataset has no `input_values`), and
    # Trainer's `group_by_length` measures rows by `model_input_names[0]` when no length column reaches it.
    model_input_names = ["modality_ids", "input_values", "input_ids", "position_ids", "timestamps", "attention_mask"]

    def __init__(
        self,
        modalities: dict[str, dict[str, Any]] | None = None,
        modality_names: list[str] | None = None,
        normalization: dict[str, dict[str, list[float]]] | None = None,
        max_tokens: int | dict[str, int] | None = None,
        max_seconds: float | dict[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if modalities is None:
            raise ValueError("PosAttnProcessor needs `modalities`, the same spec as the model config's.")
        self.modalities = modalities = normalize_modality_spec(modalities)
        self.modality_names = list(modality_names) if modality_names is not None else list(modalities)
        if sorted(self.modality_names) != sorted(modalities) or len(set(self.modality_names)) != len(modalities):
            raise ValueError(f"`modality_names` {self.modality_names} must list exactly the modalities {sorted(modalities)}.")
        self.normalization = self._checked_normalization(normalization or {})
        self.max_tokens = self._checked_limit("max_tokens", max_tokens, integer=True)
        self.max_seconds = self._checked_limit("max_seconds", max_seconds, integer=False)

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "PosAttnProcessor":
        return cls(modalities=config.modalities, modality_names=config.modality_names, **kwargs)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save `preprocessor_config.json`. Once registered for the Auto classes (importing `modeling_posattn` does it),
        transformers copies this file and writes its `AutoFeatureExtractor` entry; the `AutoProcessor` entry is added
        here so that both Auto classes load the processor as remote code."""
        if self._auto_class is not None:
            entry = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            self.auto_map = {"AutoFeatureExtractor": entry, "AutoProcessor": entry, **(getattr(self, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        # `processor_class` lets `AutoProcessor` pick this class where it is installed (no remote-code prompt) and fall
        # back to the `auto_map` entry where it is not.
        return {**super().to_dict(), "processor_class": type(self).__name__}

    @property
    def feature_dim(self) -> int:
        """Width of the packed `input_values`: the largest `stride * input_dim` of any feature modality."""
        return max(token_feature_dim(spec) for spec in self.modalities.values())

    @property
    def has_token_modality(self) -> bool:
        return any(spec.get("vocab_size") is not None for spec in self.modalities.values())

    def _checked_limit(self, argument: str, setting, integer: bool):
        """A truncation limit: None, one positive number for every modality, or `{modality: number}` with known names."""
        if setting is None:
            return None
        per_modality = setting if isinstance(setting, Mapping) else {name: setting for name in self.modality_names}
        unknown = [name for name in per_modality if name not in self.modalities]
        if unknown:
            raise ValueError(f"`{argument}` names unknown modality {unknown[0]!r}; this processor knows {self.modality_names}.")
        for name, value in per_modality.items():
            if value is None:
                continue
            wrong_type = isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real)
            if wrong_type:
                kind = "an int" if integer else "a number of seconds"
                raise TypeError(f"`{argument}` for modality '{name}' must be {kind}, got {type(value).__name__} {value!r}.")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{argument}` for modality '{name}' must be positive (and finite), got {value!r}.")
        if isinstance(setting, Mapping):
            return {name: (None if value is None else int(value) if integer else float(value)) for name, value in setting.items()}
        return int(setting) if integer else float(setting)

    def _checked_normalization(self, normalization) -> dict[str, dict[str, list[float]]]:
        """Per-channel statistics of feature modalities: `input_dim` finite means and finite positive stds each."""
        if not isinstance(normalization, Mapping):
            raise TypeError(f"`normalization` must be a dict {{modality: {{'mean': [...], 'std': [...]}}}}, got {type(normalization).__name__}.")
        checked = {}
        for name, stats in normalization.items():
            dim = self.modalities.get(name, {}).get("input_dim")
            if dim is None:
                raise ValueError(f"`normalization` for {name!r}: not a feature modality of this processor ({self.modality_names}).")
            if not isinstance(stats, Mapping) or set(stats) != {"mean", "std"}:
                raise ValueError(f"`normalization` for modality '{name}' must be {{'mean': [...], 'std': [...]}}.")
            mean, std = (np.asarray(stats[key], dtype=np.float64) for key in ("mean", "std"))
            if mean.shape != (dim,) or std.shape != (dim,):
                raise ValueError(f"`normalization` for modality '{name}': mean and std need {dim} values each, got {mean.shape} and {std.shape}.")
            if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
                raise ValueError(f"`normalization` for modality '{name}': means must be finite and stds finite and > 0.")
            checked[name] = {"mean": mean.tolist(), "std": std.tolist()}
        return checked

    def _limit(self, setting, name):
        return setting.get(name) if isinstance(setting, Mapping) else setting

    # -----------------------------------------------------------------------------------------------------------------
    # Normalisation
    # -----------------------------------------------------------------------------------------------------------------

    def fit(self, samples: Iterable[Mapping[str, Any]] | Mapping[str, list]) -> "PosAttnProcessor":
        """Fit per-channel mean and standard deviation of every feature modality on training samples (a list of samples,
        a dict of columns, or a `datasets.Dataset`). Channels with zero variance keep a standard deviation of 1."""
        sums, squares, counts = {}, {}, {}
        for index, sample in enumerate(_iter_samples(samples)):
            if not isinstance(sample, Mapping):
                raise ValueError(f"fit(): sample {index} must be a dict of modality name -> array, got {type(sample).__name__}.")
            for name, value in sample.items():
                if name in RESERVED_KEYS or value is None:
                    continue
                if name not in self.modalities:
                    raise ValueError(f"fit(): sample {index} has unknown modality {name!r}; this processor knows {self.modality_names}.")
                if self.modalities[name].get("input_dim") is None:
                    continue
                frames = checked_features(value, self.modalities[name], f"fit(): sample {index}, modality '{name}'", finite=False)
                frames = frames[np.isfinite(frames).all(axis=1)]  # fitting skips broken frames; encoding refuses them
                sums[name] = sums.get(name, 0.0) + frames.sum(axis=0)
                squares[name] = squares.get(name, 0.0) + (frames**2).sum(axis=0)
                counts[name] = counts.get(name, 0) + len(frames)
        self.normalization = {}
        for name, count in counts.items():
            if count == 0:
                continue
            mean = sums[name] / count
            std = np.sqrt(np.maximum(squares[name] / count - mean**2, 0.0))
            std = np.where(std > 1e-8, std, 1.0)
            self.normalization[name] = {"mean": mean.tolist(), "std": std.tolist()}
        return self

    # -----------------------------------------------------------------------------------------------------------------
    # Encoding
    # -----------------------------------------------------------------------------------------------------------------

    def __call__(
        self,
        samples: list[Mapping[str, Any]] | Mapping[str, list],
        return_tensors: str | None = None,
        padding: bool = True,
        **kwargs,
    ) -> BatchFeature:
        """Encode samples. A list holds samples; a dict holds columns, as `Dataset.map(..., batched=True)` passes them.

        With `padding=True` (default) returns a padded batch; with `padding=False`, unpadded per-sample rows, for
        `dataset.map(processor, batched=True, fn_kwargs={"padding": False})` and `DataCollatorWithPadding(processor)`.
        """
        rows = [self.encode_sample(sample, index) for index, sample in enumerate(_iter_samples(samples))]
        if padding:
            return self.pad(rows, return_tensors=return_tensors)
        columns = {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
        return BatchFeature(columns)

    def encode_sample(self, sample: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
        """One sample -> one unpadded packed row. Raises `ValueError` naming the sample, the modality and the problem."""
        where = f"Sample {index}"
        if not isinstance(sample, Mapping):
            raise ValueError(f"{where}: expected a dict of modality name -> array, got {type(sample).__name__}.")
        unknown = [key for key in sample if key not in self.modalities and key not in RESERVED_KEYS]
        if unknown:
            raise ValueError(f"{where}: unknown modality {unknown[0]!r}; this processor knows {self.modality_names}.")
        given_times = sample.get("timestamps") or {}
        for name in given_times:
            if name not in self.modalities:
                raise ValueError(f"{where}: `timestamps` for unknown modality {name!r}; known: {self.modality_names}.")

        blocks = []
        for modality_id, name in enumerate(self.modality_names):
            value = sample.get(name)
            times = given_times.get(name)
            if value is None:
                if times is not None and len(times):
                    raise ValueError(f"{where}, modality '{name}': `timestamps` given but the modality is missing.")
                continue
            spec = self.modalities[name]
            content = checked_features(value, spec, f"{where}, modality '{name}'") if spec.get("input_dim") else checked_token_ids(value, spec, f"{where}, modality '{name}'")
            length = len(content)
            if times is not None:
                times = checked_times(times, length, f"{where}, modality '{name}'")
            if length == 0:
                continue
            if name in self.normalization:
                stats = self.normalization[name]
                content = (content - np.asarray(stats["mean"])) / np.asarray(stats["std"])
                if (np.abs(content) > MAX_FEATURE_MAGNITUDE).any():
                    raise ValueError(f"{where}, modality '{name}': features exceed {MAX_FEATURE_MAGNITUDE:g} after normalisation (a std near 0?).")
            blocks.append([modality_id, name, content, times])

        if not blocks:
            raise ValueError(f"{where} has no tokens at all: every modality is missing or empty.")
        self._fill_times(blocks)
        self._group_frames(blocks, where)
        self._truncate(blocks, where)

        modality_ids = np.concatenate([np.full(len(content), mid) for mid, _, content, _ in blocks])
        total = len(modality_ids)
        row: dict[str, Any] = {}
        if self.feature_dim:
            values = np.zeros((total, self.feature_dim), dtype=np.float32)
        if self.has_token_modality:
            ids = np.zeros(total, dtype=np.int64)
        start = 0
        for _, name, content, _ in blocks:
            stop = start + len(content)
            if self.modalities[name].get("input_dim"):
                values[start:stop, : content.shape[1]] = content
            else:
                ids[start:stop] = content
            start = stop
        if self.feature_dim:
            row["input_values"] = values
        if self.has_token_modality:
            row["input_ids"] = ids
        row["modality_ids"] = modality_ids.astype(np.int64)
        row["position_ids"] = np.concatenate([np.arange(len(content)) for _, _, content, _ in blocks]).astype(np.int64)
        # float64: a clock at t0 = 1e6 s keeps sub-microsecond steps (float32 would round to 1/16 s); the model takes
        # differences relative to the sample's start before its own float32 cast
        row["timestamps"] = np.concatenate([times for *_, times in blocks]).astype(np.float64)
        row["attention_mask"] = np.ones(total, dtype=np.int64)
        label = sample.get("labels", sample.get("label"))
        if label is not None:
            row["labels"] = label
        return row

    def _fill_times(self, blocks: list) -> None:
        """Fill missing times: clocked `i / r`; clockless spread over the sample's span (see class docstring)."""
        start, end = math.inf, -math.inf
        for _, name, content, times in blocks:
            rate = self.modalities[name].get("sampling_rate")
            if times is not None:
                start, end = min(start, times[0]), max(end, times[-1] + (1.0 / rate if rate else 0.0))
            elif rate:
                start, end = min(start, 0.0), max(end, len(content) / rate)
        for block in blocks:
            _, name, content, times = block
            if times is not None:
                continue
            rate, positions = self.modalities[name].get("sampling_rate"), np.arange(len(content), dtype=np.float64)
            if rate:
                block[3] = positions / rate
            elif end > start:  # over the clocked span [start, end]: a clip whose clock starts at 3600 s keeps its text there
                block[3] = start + (positions + 0.5) * (end - start) / len(content)
            else:
                block[3] = (start if math.isfinite(start) else 0.0) + positions * CLOCKLESS_STEP_SECONDS

    def _group_frames(self, blocks: list, where: str) -> None:
        """Strided stems: `stride` frames -> one token (frames concatenated, last group zero-filled), timed at the mean
        time of its real frames. Vectorised per modality (a reshape and a mean), no loop over tokens."""
        for block in blocks:
            _, name, content, times = block
            spec = self.modalities[name]
            stride = stem_spec(spec)["stride"] if spec.get("input_dim") is not None else 1
            if stride == 1:
                continue
            length = len(content)
            if length < stride:
                raise ValueError(
                    f"{where}, modality '{name}': {length} frame(s), fewer than the stem's stride {stride}; "
                    "lower the stride or drop such short samples."
                )
            groups = -(-length // stride)
            frames = np.zeros((groups * stride, content.shape[1]), dtype=np.float64)
            frames[:length] = content
            real = np.zeros(groups * stride)
            real[:length] = 1.0
            summed = np.zeros(groups * stride)
            summed[:length] = times
            counts = real.reshape(groups, stride).sum(axis=1)
            block[2] = frames.reshape(groups, stride * content.shape[1])
            block[3] = summed.reshape(groups, stride).sum(axis=1) / counts

    def _truncate(self, blocks: list, where: str) -> None:
        for block in blocks:
            _, name, content, times = block
            keep = len(content)
            max_seconds = self._limit(self.max_seconds, name)
            if max_seconds is not None:
                keep = min(keep, int(np.searchsorted(times, max_seconds, side="left")))
            max_tokens = self._limit(self.max_tokens, name)
            if max_tokens is not None:
                keep = min(keep, int(max_tokens))
            if keep < len(content):
                warnings.warn(
                    f"{where}, modality '{name}': truncated from {len(content)} to {keep} tokens "
                    f"(max_tokens={max_tokens}, max_seconds={max_seconds}).",
                    stacklevel=4,
                )
                block[2], block[3] = content[:keep], times[:keep]
        if not any(len(content) for _, _, content, _ in blocks):
            raise ValueError(f"{where}: truncation left no tokens at all.")
        blocks[:] = [block for block in blocks if len(block[2])]

    # -----------------------------------------------------------------------------------------------------------------
    # Padding
    # -----------------------------------------------------------------------------------------------------------------

    def pad(
        self,
        rows: list[Mapping[str, Any]],
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Pad unpadded packed rows (from `__call__(..., padding=False)` or a mapped dataset) into one batch.

        Takes transformers' padding keywords, so `DataCollatorWithPadding(processor)` is this project's collator:
        `padding` True/"longest" (to the longest row), "max_length" (to `max_length`) or False/"do_not_pad" (rows must
        already have one length); `pad_to_multiple_of` rounds the padded length up (tensor-core friendly shapes, fewer
        recompilations). Rows are never truncated here: a row longer than `max_length` is an error (truncate with the
        processor's `max_tokens` / `max_seconds`, which know the modalities).
        """
        check_rows(rows, self.feature_dim)
        lengths = [len(row["modality_ids"]) for row in rows]
        target = self._padded_length(lengths, padding, max_length, pad_to_multiple_of)
        if return_attention_mask is False and min(lengths) < target:
            raise ValueError(
                "return_attention_mask=False on a batch that needs padding: without the mask the model would read the "
                "padding as tokens. Keep the mask, or pad rows of one length with padding=False."
            )
        batch_size = len(rows)
        batch: dict[str, Any] = {}
        if "input_values" in rows[0]:
            values = np.zeros((batch_size, target, self.feature_dim), dtype=np.float32)
            for i, row in enumerate(rows):
                values[i, : lengths[i]] = np.asarray(row["input_values"], dtype=np.float32).reshape(lengths[i], -1)
            batch["input_values"] = values
        for key, dtype in (("input_ids", np.int64), ("modality_ids", np.int64), ("position_ids", np.int64),
                           ("timestamps", np.float64), ("attention_mask", np.int64)):
            if key not in rows[0] or (key == "attention_mask" and return_attention_mask is False):
                continue
            padded = np.zeros((batch_size, target), dtype=dtype)
            for i, row in enumerate(rows):
                padded[i, : lengths[i]] = np.asarray(row[key], dtype=dtype)
            batch[key] = padded
        labels = [row.get("labels", row.get("label")) for row in rows]
        if any(label is not None for label in labels):
            if any(label is None for label in labels):
                raise ValueError("Some rows carry labels and some do not.")
            array = np.asarray(labels)  # numeric: checked by `check_rows`
            batch["labels"] = array.astype(np.int64 if np.issubdtype(array.dtype, np.integer) else np.float32)
        return BatchFeature(batch, tensor_type=return_tensors)

    @staticmethod
    def _padded_length(lengths: list[int], padding, max_length: int | None, pad_to_multiple_of: int | None) -> int:
        """The batch's sequence length under transformers' padding strategies (no truncation)."""
        strategy = {True: "longest", False: "do_not_pad"}.get(padding, padding)
        if strategy not in ("longest", "max_length", "do_not_pad"):
            raise ValueError(f"`padding` must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}.")
        longest = max(lengths)
        if strategy == "do_not_pad":
            if len(set(lengths)) > 1:
                raise ValueError(f"padding={padding!r} needs rows of one length, got lengths {sorted(set(lengths))}.")
            return longest
        if strategy == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs `max_length`.")
            if longest > max_length:
                raise ValueError(
                    f"A row has {longest} tokens, more than max_length={max_length}; the processor truncates "
                    "(max_tokens / max_seconds), padding never does."
                )
            longest = max_length
        if pad_to_multiple_of is not None:
            if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise ValueError(f"`pad_to_multiple_of` must be a positive int, got {pad_to_multiple_of!r}.")
            longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
        return longest


def _iter_samples(samples) -> Iterable[Mapping[str, Any]]:
    """Samples from a list of samples, or from a dict of equal-length columns (a `datasets` batch)."""
    if isinstance(samples, Mapping):
        columns = {key: value for key, value in samples.items()}
        sizes = {len(value) for value in columns.values()}
        if len(sizes) > 1:
            raise ValueError(f"A dict of columns needs equal-length columns, got lengths {sorted(sizes)}.")
        size = sizes.pop() if sizes else 0
        for i in range(size):
            sample = {key: value[i] for key, value in columns.items()}
            if isinstance(sample.get("timestamps"), Mapping):
                sample["timestamps"] = {k: v for k, v in sample["timestamps"].items() if v is not None}
            yield sample
    else:
        yield from samples


__all__ = ["PosAttnProcessor"]

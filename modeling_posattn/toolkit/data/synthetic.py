"""SYNTHETIC cross-modal timing task: the embedded default dataset of `scripts/train.py`.

Nothing here is real data. Each sample is a short synthetic "recording" with two clocked streams and an optional
clockless one:

- `audio`: 100 Hz x 8 features of Gaussian noise, holding one *target* audio event (a fixed 8-d pattern added over
  5 frames, 50 ms) and some distractor bursts (other fixed patterns);
- `video`: 25 Hz x 6 features of Gaussian noise, holding one *target* video event (a fixed 6-d pattern over 2 frames,
  80 ms) and some distractor bursts;
- `text` (optional, on by default): a few random token ids (vocabulary 16) with no clock and no information: a
  distractor modality that exercises the token path.

The label is the *relative timing* of the two target events, `delta = onset(video) - onset(audio)`:

| label | name | delta |
|---|---|---|
| 0 | `audio_first` | `+0.15 .. +0.45` s |
| 1 | `synchronous` | `-0.05 .. +0.05` s (within 50 ms) |
| 2 | `video_first` | `-0.45 .. -0.15` s |

The two onsets are drawn so that the pair's distribution is symmetric under exchanging them, events always lie
fully inside their streams, and every class has the same content: the *multiset* of frames of each modality has the
same distribution for every label. A model that cannot see where its tokens are (`absolute_position_encoding="none"`
and `relative_position_encoding="none"`) is therefore exactly at chance (1/3); only position (index or time) reveals
the label. Swapping the two onsets (`SyntheticTimingTask.make_sample(..., swap=True)`, same random numbers) turns
`audio_first` into `video_first` and back and keeps `synchronous`.

Lengths vary per sample (duration 0.65-1.3 s: 65-130 audio frames, 16-32 video frames, 3-8 text tokens).
`max_video_offset > 0` shifts the video stream's clock by a random offset and writes explicit `timestamps`, so that
only time-based encodings (`multiscale`, `time_rope`, `alibi`, `relative_bias`) can align the streams.

Everything is generated with numpy from `seed`: the same arguments give the same dataset, bit for bit.
"""

from __future__ import annotations

import datasets
import numpy as np

from . import BuiltinDataset

AUDIO_RATE, AUDIO_DIM, AUDIO_EVENT_FRAMES = 100.0, 8, 5
VIDEO_RATE, VIDEO_DIM, VIDEO_EVENT_FRAMES = 25.0, 6, 2
TEXT_VOCAB = 16
LABEL_NAMES = ["audio_first", "synchronous", "video_first"]
# (low, high) of delta = video onset - audio onset, in seconds, per label.
DELTA_RANGES = {0: (0.15, 0.45), 1: (-0.05, 0.05), 2: (-0.45, -0.15)}
PREPARATION_VERSION = "1"


def _patterns(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """`count` unit vectors in `dim` dimensions, pairwise clearly different (cosine < 0.5)."""
    chosen: list[np.ndarray] = []
    while len(chosen) < count:
        vector = rng.standard_normal(dim)
        vector /= np.linalg.norm(vector)
        if all(abs(float(vector @ other)) < 0.5 for other in chosen):
            chosen.append(vector)
    return np.stack(chosen)


class SyntheticTimingTask:
    """Generator of the synthetic cross-modal timing task (see the module docstring). Patterns come from `seed`."""

    def __init__(
        self,
        seed: int = 0,
        min_duration: float = 0.65,
        max_duration: float = 1.3,
        noise: float = 0.5,
        event_strength: float = 3.0,
        max_distractors: int = 2,
        include_text: bool = True,
        max_video_offset: float = 0.0,
    ):
        if not 0.0 < min_duration <= max_duration:
            raise ValueError(f"Need 0 < min_duration <= max_duration, got {min_duration}, {max_duration}.")
        longest_delta = max(abs(bound) for bounds in DELTA_RANGES.values() for bound in bounds)
        if min_duration < longest_delta + 0.2 + max_video_offset - 1e-9:
            raise ValueError(
                f"min_duration must be at least {longest_delta + 0.2 + max_video_offset:.2f} s (largest |delta| + 0.2 s "
                "+ max_video_offset) so that both events fit."
            )
        self.min_duration, self.max_duration = min_duration, max_duration
        self.noise, self.event_strength = noise, event_strength
        self.max_distractors, self.include_text, self.max_video_offset = max_distractors, include_text, max_video_offset
        patterns = np.random.default_rng([seed, 7919])
        # Pattern 0 is the target event; the others are distractors.
        self.audio_patterns = _patterns(patterns, 3, AUDIO_DIM)
        self.video_patterns = _patterns(patterns, 3, VIDEO_DIM)

    @property
    def modalities(self) -> dict[str, dict]:
        modalities = {
            "audio": {"input_dim": AUDIO_DIM, "sampling_rate": AUDIO_RATE},
            "video": {"input_dim": VIDEO_DIM, "sampling_rate": VIDEO_RATE},
        }
        if self.include_text:
            modalities["text"] = {"vocab_size": TEXT_VOCAB, "sampling_rate": None}
        return modalities

    def make_sample(self, rng: np.random.Generator, label: int, swap: bool = False) -> dict:
        """One sample of class `label`. `swap=True` exchanges the two target onsets (and nothing else), which maps
        `audio_first` to `video_first` and back; it consumes the same random numbers as `swap=False`."""
        duration = rng.uniform(self.min_duration, self.max_duration)
        num_audio, num_video = int(round(duration * AUDIO_RATE)), int(round(duration * VIDEO_RATE))
        offset = rng.uniform(0.0, self.max_video_offset) if self.max_video_offset > 0 else 0.0
        audio_times = np.arange(num_audio) / AUDIO_RATE
        video_times = offset + np.arange(num_video) / VIDEO_RATE
        audio_event, video_event = AUDIO_EVENT_FRAMES / AUDIO_RATE, VIDEO_EVENT_FRAMES / VIDEO_RATE
        # Onsets: the earlier one uniform in the room left, the later one `|delta|` after it; for synchronous pairs
        # the sign of delta is random. Which stream is "first" is decided by the label (or by a coin for class 1), so
        # the pair's distribution is symmetric under exchanging the two streams.
        low, high = DELTA_RANGES[label]
        delta = rng.uniform(low, high)
        start = max(audio_times[0], video_times[0])
        end = min(audio_times[-1] - audio_event, video_times[-1] - video_event)
        first = rng.uniform(start, end - abs(delta))
        audio_onset, video_onset = (first, first + delta) if delta >= 0 else (first - delta, first)
        if swap:
            audio_onset, video_onset = video_onset, audio_onset

        audio = rng.standard_normal((num_audio, AUDIO_DIM)) * self.noise
        video = rng.standard_normal((num_video, VIDEO_DIM)) * self.noise
        self._add_event(audio, audio_times, audio_onset, AUDIO_EVENT_FRAMES, self.audio_patterns[0])
        self._add_event(video, video_times, video_onset, VIDEO_EVENT_FRAMES, self.video_patterns[0])
        for _ in range(rng.integers(0, self.max_distractors + 1)):
            kind = rng.integers(1, 3)
            onset = rng.uniform(audio_times[0], audio_times[-1] - audio_event)
            self._add_event(audio, audio_times, onset, AUDIO_EVENT_FRAMES, self.audio_patterns[kind])
        for _ in range(rng.integers(0, self.max_distractors + 1)):
            kind = rng.integers(1, 3)
            onset = rng.uniform(video_times[0], video_times[-1] - video_event)
            self._add_event(video, video_times, onset, VIDEO_EVENT_FRAMES, self.video_patterns[kind])

        sample = {"audio": audio.astype(np.float32).tolist(), "video": video.astype(np.float32).tolist()}
        if self.include_text:
            sample["text"] = rng.integers(0, TEXT_VOCAB, size=rng.integers(3, 9)).tolist()
        if self.max_video_offset > 0:
            sample["timestamps"] = {"audio": audio_times.tolist(), "video": video_times.tolist()}
        sample["labels"] = int(2 - label if swap and label != 1 else label)
        sample["audio_onset"], sample["video_onset"] = float(audio_onset), float(video_onset)
        return sample

    def _add_event(self, frames, times, onset, length, pattern) -> None:
        first = int(np.searchsorted(times, onset - 1e-9))
        frames[first : first + length] += self.event_strength * pattern

    def generate(self, num_samples: int, seed) -> list[dict]:
        """`num_samples` samples, classes balanced (cycled then shuffled), from a numpy generator seeded by `seed`."""
        rng = np.random.default_rng(seed)
        labels = rng.permutation(np.arange(num_samples) % len(LABEL_NAMES))
        return [self.make_sample(rng, int(label)) for label in labels]


def _to_dataset(samples: list[dict], modalities: dict, return_onsets: bool = False) -> datasets.Dataset:
    features = {
        "audio": datasets.List(datasets.List(datasets.Value("float32"))),
        "video": datasets.List(datasets.List(datasets.Value("float32"))),
    }
    if "text" in modalities:
        features["text"] = datasets.List(datasets.Value("int64"))
    if samples and "timestamps" in samples[0]:
        features["timestamps"] = {
            "audio": datasets.List(datasets.Value("float32")),
            "video": datasets.List(datasets.Value("float32")),
        }
    features["labels"] = datasets.ClassLabel(names=LABEL_NAMES)
    if return_onsets:
        features["audio_onset"] = datasets.Value("float32")
        features["video_onset"] = datasets.Value("float32")
    columns = {name: [sample[name] for sample in samples] for name in features}
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def load_synthetic(
    num_train: int = 1200,
    num_validation: int = 300,
    num_test: int = 300,
    seed: int = 0,
    min_duration: float = 0.65,
    max_duration: float = 1.3,
    noise: float = 0.5,
    event_strength: float = 3.0,
    max_distractors: int = 2,
    include_text: bool = True,
    max_video_offset: float = 0.0,
    return_onsets: bool = False,
) -> BuiltinDataset:
    """The SYNTHETIC cross-modal timing task (module docstring) as train / validation / test splits.

    Each split has its own numpy stream derived from `seed` (`[seed, 0]`, `[seed, 1]`, `[seed, 2]`), so changing
    `num_train` never changes the test set. `num_validation=0` leaves the validation split out.
    Columns: `audio` (T x 8), `video` (T x 6), `text` (ids, if `include_text`), `timestamps` (if
    `max_video_offset > 0`) and `labels` (ClassLabel); with `return_onsets=True` also `audio_onset` / `video_onset`
    (the hidden answer in seconds, for analysis: drop them before `dataset.map(processor)`, which rejects unknown
    columns).
    """
    options = dict(
        num_train=num_train, num_validation=num_validation, num_test=num_test, seed=seed, min_duration=min_duration,
        max_duration=max_duration, noise=noise, event_strength=event_strength, max_distractors=max_distractors,
        include_text=include_text, max_video_offset=max_video_offset, return_onsets=return_onsets,
    )
    task = SyntheticTimingTask(
        seed=seed, min_duration=min_duration, max_duration=max_duration, noise=noise, event_strength=event_strength,
        max_distractors=max_distractors, include_text=include_text, max_video_offset=max_video_offset,
    )
    sizes = {"train": num_train, "validation": num_validation, "test": num_test}
    splits = {
        split: _to_dataset(task.generate(size, [seed, index]), task.modalities, return_onsets)
        for index, (split, size) in enumerate(sizes.items())
        if size > 0
    }
    text = ", plus a clockless `text` distractor (random ids, 16-token vocabulary)" if include_text else ""
    description = (
        "SYNTHETIC cross-modal timing task (generated, not real data): `audio` (100 Hz x 8) and `video` (25 Hz x 6) "
        f"noise streams, each holding one target event plus distractor bursts{text}; the label is the relative timing "
        "of the target events: audio first (video 0.15-0.45 s later), synchronous (within 50 ms), or video first. "
        "Every class has the same distribution of frame content, so an encoder without position information is at chance (1/3). "
        f"Durations {min_duration}-{max_duration} s. Generated with numpy from seed {seed}; "
        + ", ".join(f"{split} {size}" for split, size in sizes.items() if size > 0)
        + " samples."
    )
    return BuiltinDataset(
        dataset=datasets.DatasetDict(splits),
        modalities=task.modalities,
        problem_type="single_label_classification",
        label_names=list(LABEL_NAMES),
        description=description,
        source="synthetic (modeling_posattn/data/synthetic.py)",
        citation="",
        preparation_version=PREPARATION_VERSION,
        options=options,
    )


__all__ = ["load_synthetic", "SyntheticTimingTask", "LABEL_NAMES"]

"""NATOPS gesture recognition (UEA multivariate archive) as a multimodal task: each body-sensor group is a modality."""

import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from . import BuiltinDataset
from ._common import (
    arrow_dataset,
    frames_column,
    frames_feature,
    resolve_data_dir,
    struct_column,
    values_column,
)
from .ts_format import read_ts, sort_labels

NATOPS_PREPARATION_VERSION = "1"
NATOPS_NOMINAL_SAMPLING_RATE = 25.0
NATOPS_NUM_CHANNELS = 24
NATOPS_SERIES_LENGTH = 51

# The eight sensors in file order; sensor k owns channels 3k, 3k+1, 3k+2 (x, y, z), 0-based.
NATOPS_SENSORS = (
    "hand_tip_left", "hand_tip_right", "elbow_left", "elbow_right",
    "wrist_left", "wrist_right", "thumb_left", "thumb_right",
)  # fmt: skip
NATOPS_PARTS = {"hand_tips": (0, 1), "elbows": (2, 3), "wrists": (4, 5), "thumbs": (6, 7)}  # part -> sensor indices
# Multi-rate study: keep every k-th of the 51 steps per body part (decimation, no filter: true values at true times).
NATOPS_MULTIRATE_STEPS = {"hand_tips": 1, "elbows": 2, "wrists": 3, "thumbs": 4}
NATOPS_CLASS_MEANINGS = {
    "1.0": "I have command", "2.0": "All clear", "3.0": "Not clear",
    "4.0": "Spread wings", "5.0": "Fold wings", "6.0": "Lock wings",
}  # fmt: skip

NATOPS_CITATION = """@article{ghouaiel2017natops,
  title={Continuous pattern detection and recognition in stream - a benchmark for online gesture recognition},
  author={Ghouaiel, Nehla and Marteau, Pierre-Fran{\\c{c}}ois and Dupont, Marc},
  journal={International Journal of Applied Pattern Recognition}, volume={4}, number={2}, year={2017}
}
@article{bagnall2018uea,
  title={The UEA multivariate time series classification archive, 2018},
  author={Bagnall, Anthony and Dau, Hoang Anh and Lines, Jason and Flynn, Michael and Large, James and Bostrom, Aaron
          and Southam, Paul and Keogh, Eamonn}, journal={arXiv preprint arXiv:1811.00075}, year={2018}
}"""


def _sensor_channels(sensor: int) -> list[int]:
    return [3 * sensor, 3 * sensor + 1, 3 * sensor + 2]


def natops_groupings() -> dict[str, dict[str, list[int]]]:
    """The named groupings: modality name -> 0-based channel indices (channel 1 of the file header is index 0)."""
    parts = {name: [c for s in sensors for c in _sensor_channels(s)] for name, sensors in NATOPS_PARTS.items()}
    sensors = {name: _sensor_channels(k) for k, name in enumerate(NATOPS_SENSORS)}
    return {"parts": parts, "sensors": sensors, "single": {"all_sensors": list(range(NATOPS_NUM_CHANNELS))}}


def _resolve_grouping(grouping) -> tuple[str, dict[str, list[int]]]:
    if isinstance(grouping, str):
        named = natops_groupings()
        if grouping not in named:
            raise ValueError(f"`grouping` must be one of {sorted(named)} or a dict {{modality: [channels]}}, got {grouping!r}.")
        return grouping, named[grouping]
    if not isinstance(grouping, Mapping) or not grouping:
        raise ValueError(f"`grouping` must be a name or a non-empty dict {{modality: [0-based channels]}}, got {grouping!r}.")
    groups = {}
    for name, channels in grouping.items():
        channels = [int(c) for c in channels]
        if not channels or any(not 0 <= c < NATOPS_NUM_CHANNELS for c in channels):
            raise ValueError(f"Modality {name!r}: channels must be 0-based indices in [0, 24), got {list(grouping[name])}.")
        groups[str(name)] = channels
    return "custom", groups


def _multirate_steps(groups: dict[str, list[int]], multirate) -> dict[str, int]:
    """Step (decimation factor) per modality: 1 without multirate; else the factor of the body part owning its channels."""
    if not multirate:
        return {name: 1 for name in groups}
    part_of_channel = {c: part for part, sensors in NATOPS_PARTS.items() for s in sensors for c in _sensor_channels(s)}
    steps = {}
    for name, channels in groups.items():
        parts = {part_of_channel[c] for c in channels}
        if len(parts) != 1:
            raise ValueError(
                f"multirate=True needs every modality inside one body part (hand tips, elbows, wrists, thumbs); "
                f"modality {name!r} mixes {sorted(parts)}. Use grouping='parts', 'sensors' or a finer dict."
            )
        steps[name] = NATOPS_MULTIRATE_STEPS[parts.pop()]
    return steps


TIMING_LABELS = ["aligned", "shifted"]


def _check_timing_task(timing_task, groups: dict[str, list[int]], length: int) -> dict | None:
    if timing_task is None:
        return None
    if not isinstance(timing_task, Mapping) or set(timing_task) != {"modality", "shift_steps"}:
        raise ValueError(f"`timing_task` must be {{'modality': name, 'shift_steps': k}}, got {timing_task!r}.")
    modality, shift = timing_task["modality"], timing_task["shift_steps"]
    if modality not in groups or len(groups) < 2:
        raise ValueError(f"`timing_task.modality` must be one of the grouping's modalities {list(groups)} (at least "
                         f"two), got {modality!r}.")
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 < shift < length // 2:
        raise ValueError(f"`timing_task.shift_steps` must be an integer in [1, {length // 2 - 1}], got {shift!r}.")
    return {"modality": modality, "shift_steps": shift}


def timing_windows(values: np.ndarray, groups: dict[str, list[int]], timing: dict, rng: np.random.Generator):
    """`({modality: (N, channels, T - k) array}, labels)` of the timing task (see `load_natops`)."""
    count, shift = len(values), timing["shift_steps"]
    labels = rng.permutation(np.arange(count) % 2)  # balanced: half aligned, half shifted
    target_late = rng.integers(0, 2, count).astype(bool)
    others_late = target_late ^ labels.astype(bool)
    window = values.shape[2] - shift
    streams = {}
    for name, channels in groups.items():
        late = target_late if name == timing["modality"] else others_late
        starts = np.where(late, shift, 0)
        index = starts[:, None] + np.arange(window)[None, :]
        streams[name] = np.take_along_axis(values[:, channels], index[:, None, :], axis=2)
    return streams, [TIMING_LABELS[label] for label in labels]


def load_natops(
    data_dir: str | os.PathLike | None = None,
    grouping: str | Mapping[str, Sequence[int]] = "parts",
    multirate: bool = False,
    sampling_rate: float = NATOPS_NOMINAL_SAMPLING_RATE,
    seed: int = 0,
    timing_task: Mapping[str, Any] | None = None,
) -> BuiltinDataset:
    """NATOPS (UEA archive; AALTD'16 challenge) with body-sensor groups as modalities, on the official split.

    Reads `<data_dir>/natops/NATOPS_TRAIN.ts` and `NATOPS_TEST.ts` (`data_dir` defaults to `$POSATTN_DATA_DIR`, else
    `../shared/data` relative to the project root; `FileNotFoundError` names the folder when it is absent). Splits
    `train` (180) and `test` (180); 6 classes; every series has 24 channels x 51 steps. Values are kept as in the file
    (fit the processor's normalisation on `train`).

    Channels (0-based index = header number - 1): 0-2 hand tip left, 3-5 hand tip right, 6-8 elbow left, 9-11 elbow
    right, 12-14 wrist left, 15-17 wrist right, 18-20 thumb left, 21-23 thumb right (x, y, z each).

    Args:
        grouping: `"parts"` (default): 4 modalities `hand_tips`, `elbows`, `wrists`, `thumbs` of 6 channels each (left
            x,y,z then right x,y,z); `"sensors"`: 8 modalities of 3 channels, named as in `NATOPS_SENSORS`;
            `"single"`: one modality `all_sensors` of all 24 channels; or a dict `{modality: [0-based channels]}`.
        multirate: the multi-rate NATOPS variant. Each body part is decimated to its own rate, keeping its TRUE
            timestamps: hand tips keep all 51 steps, elbows every 2nd step (0, 2, ..., 50), wrists every 3rd (0, 3,
            ..., 48), thumbs every 4th (0, 4, ..., 48). Decimation keeps the recorded values at the kept steps (no
            low-pass filter, no interpolation). The `timestamps` column holds `step / sampling_rate` for the kept steps
            and each modality's spec `sampling_rate` is divided by its step (25, 12.5, 8.33.., 6.25 Hz at the default
            rate). Needs every modality inside one body part (`grouping="single"` is refused).
        sampling_rate: the nominal clock of the 51 steps in Hz. The archive does not state the rate after its
            resampling to 51 steps; 25 Hz (a ~2 s gesture, one step per TMRoPE 40 ms unit) is this project's documented
            choice. Timestamps are `step / sampling_rate` seconds.
        seed: seeds `timing_task`'s draws (nothing else is random: the split is the official one).
        timing_task: `{"modality": name, "shift_steps": k}` replaces the gesture labels by a constructed cross-modal
            timing task on the real series: is `modality` in step with the others (`aligned`) or displaced by k of the
            51 steps (`shifted`)? Every stream of a sample is cut to the window of 51 - k steps starting at step 0
            ("early") or k ("late"); timestamps restart at 0 in every stream. `aligned`: all streams take the same
            window; `shifted`: `modality` takes the other window than the rest. The windows are drawn (from `seed`,
            per split) so that each stream alone is early or late with probability 1/2 in both classes, and the
            classes are balanced: no single stream, length or time span tells the label, only the streams' timing
            against each other. Works with `multirate` (decimation after the cut).

    Returns:
        A [`BuiltinDataset`] whose rows hold one column per modality (`T x channels` floats), `timestamps` (struct of
        per-modality times in seconds) and `labels` (ClassLabel; `label_names` are the file's class strings
        `"1.0"`..`"6.0"` sorted numerically: I have command, All clear, Not clear, Spread wings, Fold wings, Lock wings).
    """
    if not (isinstance(sampling_rate, (int, float)) and not isinstance(sampling_rate, bool) and sampling_rate > 0):
        raise ValueError(f"`sampling_rate` must be a positive number of steps per second, got {sampling_rate!r}.")
    grouping_name, groups = _resolve_grouping(grouping)
    steps = _multirate_steps(groups, multirate)
    folder = resolve_data_dir(data_dir, "natops", required=("NATOPS_TRAIN.ts", "NATOPS_TEST.ts"))

    raw = {split: read_ts(folder / f"NATOPS_{split.upper()}.ts") for split in ("train", "test")}
    timing = _check_timing_task(timing_task, groups, raw["train"][0].shape[2])
    for split, (values, _) in raw.items():
        if values.shape[1] != NATOPS_NUM_CHANNELS:
            raise ValueError(f"NATOPS {split}: expected {NATOPS_NUM_CHANNELS} channels, got {values.shape[1]}.")
    if timing is not None:
        raw = {split: timing_windows(values, groups, timing, np.random.default_rng([seed, index]))
               for index, (split, (values, _)) in enumerate(raw.items())}
    label_names = sort_labels([label for _, labels in raw.values() for label in labels])
    label_index = {name: i for i, name in enumerate(label_names)}

    modalities = {
        name: {"input_dim": len(channels), "sampling_rate": float(sampling_rate) / steps[name]} for name, channels in groups.items()
    }
    features = datasets.Features(
        {
            **{name: frames_feature() for name in groups},
            "timestamps": {name: datasets.List(datasets.Value("float64")) for name in groups},
            "labels": datasets.ClassLabel(names=label_names),
        }
    )
    splits = {}
    for split, (values, labels) in raw.items():
        length = (next(iter(values.values())) if timing is not None else values).shape[-1]
        columns, times = {}, {}
        for name, channels in groups.items():
            kept = np.arange(0, length, steps[name])
            stream = values[name] if timing is not None else values[:, channels]
            columns[name] = frames_column([sample[:, kept].T for sample in stream], dim=len(channels))
            times[name] = values_column([kept / float(sampling_rate)] * len(labels))
        columns["timestamps"] = struct_column(times)
        columns["labels"] = np.array([label_index[label] for label in labels], dtype=np.int64)
        splits[split] = arrow_dataset(columns, features)

    return BuiltinDataset(
        dataset=datasets.DatasetDict(splits),
        modalities=modalities,
        problem_type="single_label_classification",
        label_names=label_names,
        description=(
            "NATOPS aircraft-handling gestures (UEA archive): 24 channels = 8 body sensors x (x, y, z), 51 steps at a "
            f"nominal {sampling_rate:g} Hz, official 180/180 split, 6 classes "
            f"({', '.join(f'{k}: {v}' for k, v in NATOPS_CLASS_MEANINGS.items())}). Modalities: grouping "
            f"{grouping_name!r} -> {list(groups)}"
            + (f"; multi-rate variant, steps per modality {steps}" if multirate else "")
            + (f"; constructed timing task (labels aligned/shifted: is {timing['modality']!r} displaced by "
               f"{timing['shift_steps']} steps against the other streams?), seed {seed}." if timing else ".")
        ),
        source="UEA multivariate time series classification archive, NATOPS (via GitHub Navidfoumani/Disjoint-CNN, Multivariate_ts/NATOPS/)",
        citation=NATOPS_CITATION,
        preparation_version=NATOPS_PREPARATION_VERSION,
        options={
            "grouping": grouping_name,
            "groups": {name: list(channels) for name, channels in groups.items()},
            "multirate": bool(multirate),
            "steps": steps,
            "sampling_rate": float(sampling_rate),
            "seed": seed,
            **({"timing_task": timing} if timing else {}),
        },
    )


__all__ = ["load_natops", "read_ts", "natops_groupings", "NATOPS_PREPARATION_VERSION", "NATOPS_SENSORS", "NATOPS_PARTS"]

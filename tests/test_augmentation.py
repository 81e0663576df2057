"""Toolkit pieces of the small-data recipe: raw-sample augmentation and EMA weight averaging for Trainer."""

import numpy as np
import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from modeling_posattn.toolkit.augmentation import TimeSeriesAugmentation
from modeling_posattn.toolkit.averaging import WeightAveragingCallback


def sample():
    t = np.linspace(0, 1, 50)
    return {
        "acc": np.stack([np.sin(6 * t), np.cos(6 * t)], axis=1),
        "gyro": np.stack([np.sin(6 * t), np.cos(6 * t)], axis=1),
        "text": np.array([1, 2, 3]),
        "labels": 4,
    }


def test_no_strength_means_no_change():
    augmentation = TimeSeriesAugmentation()
    assert not augmentation.active
    out = augmentation(sample(), np.random.default_rng(0))
    for name in ("acc", "gyro"):
        np.testing.assert_allclose(out[name], sample()[name])
    assert out["labels"] == 4 and list(out["text"]) == [1, 2, 3]


def test_time_transform_is_shared_by_clocked_modalities_and_skips_clockless_ones():
    augmentation = TimeSeriesAugmentation(time_warp=0.3, window_slice=0.8, sampling_rates={"acc": 50.0, "gyro": 50.0, "text": None})
    out = augmentation(sample(), np.random.default_rng(1))
    assert out["acc"].shape == (50, 2)
    assert not np.allclose(out["acc"], sample()["acc"])
    np.testing.assert_allclose(out["acc"], out["gyro"])  # same signal, same warp: still aligned
    assert list(out["text"]) == [1, 2, 3]


def test_jitter_scales_with_channel_std_and_dropout_keeps_one_modality():
    augmentation = TimeSeriesAugmentation(jitter=0.1, channel_std={"acc": np.array([10.0, 0.0])})
    out = augmentation(sample(), np.random.default_rng(2))
    noise = out["acc"] - sample()["acc"]
    assert 0.5 < noise[:, 0].std() < 2 and np.allclose(noise[:, 1], 0)
    dropping = TimeSeriesAugmentation(modality_dropout=0.99)
    for seed in range(5):
        kept = [k for k in dropping(sample(), np.random.default_rng(seed)) if k != "labels"]
        assert len(kept) >= 1


@pytest.mark.parametrize("field, value", [("jitter", -1), ("window_slice", 0), ("modality_dropout", 1.0)])
def test_bad_strengths_are_refused(field, value):
    with pytest.raises(ValueError, match=f"`{field}`"):
        TimeSeriesAugmentation(**{field: value})


def test_weight_averaging_loads_the_average_at_the_end(tmp_path):
    model = torch.nn.Linear(2, 1)
    callback = WeightAveragingCallback(decay=0.5)
    args, state, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerState(), TrainerControl()
    callback.on_train_begin(args, state, control, model=model)
    weights = []
    for value in (1.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        weights.append(value)
        callback.on_step_end(args, state, control, model=model)
    callback.on_train_end(args, state, control, model=model)
    # AveragedModel's EMA: the first update copies, later ones average with decay 0.5.
    torch.testing.assert_close(model.weight, torch.full((1, 2), 2.0))
    with pytest.raises(ValueError, match="`decay`"):
        WeightAveragingCallback(decay=1.0)

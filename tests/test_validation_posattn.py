"""The entry checks' fast path (`BatchSummary`: extremes over real tokens, one host sync) refuses exactly the batches
whose per-token flags (`raise_first_problem`) find a problem, wherever a bad value sits; and what it learns in passing
(padding, token counts, the highest position) is exact."""

import math
import random

import numpy as np
import pytest
import torch

from modeling_posattn import PosAttnConfig, PosAttnProcessor
from modeling_posattn.validation_posattn import resolve_token_positions

MODALITIES = {"audio": {"input_dim": 4, "sampling_rate": 100.0}, "video": {"input_dim": 2, "sampling_rate": 25.0},
              "text": {"vocab_size": 10}}


def packed_batch() -> dict:
    rng = np.random.default_rng(0)
    samples = [
        {"audio": rng.normal(size=(6, 4)), "video": rng.normal(size=(2, 2)), "text": rng.integers(0, 10, size=3)},
        {"audio": rng.normal(size=(3, 4)), "text": rng.integers(0, 10, size=2)},
    ]
    return dict(PosAttnProcessor(modalities=MODALITIES)(samples, return_tensors="pt"))


def resolve(config, inputs):
    return resolve_token_positions(config, inputs.get("input_values"), inputs.get("input_ids"), inputs["modality_ids"],
                                   inputs.get("position_ids"), inputs.get("timestamps"), inputs.get("attention_mask"))


# (name, kind of token it may hit, how it corrupts one token): each is a problem on a real token of that kind and
# harmless on padding (and, for features, on a token modality's positions or past a narrower modality's columns)
CORRUPTIONS = [
    ("feature NaN", "feature", lambda inputs, b, t: inputs["input_values"][b, t, 1].fill_(math.nan)),
    ("feature 1e30", "feature", lambda inputs, b, t: inputs["input_values"][b, t, 0].fill_(1e30)),
    ("feature -inf", "feature", lambda inputs, b, t: inputs["input_values"][b, t, 1].fill_(-math.inf)),
    ("modality id 3", "any", lambda inputs, b, t: inputs["modality_ids"][b, t].fill_(3)),
    ("modality id -1", "any", lambda inputs, b, t: inputs["modality_ids"][b, t].fill_(-1)),
    ("position -2", "any", lambda inputs, b, t: inputs["position_ids"][b, t].fill_(-2)),
    ("timestamp NaN", "any", lambda inputs, b, t: inputs["timestamps"][b, t].fill_(math.nan)),
    ("timestamp inf", "any", lambda inputs, b, t: inputs["timestamps"][b, t].fill_(math.inf)),
    ("token id 10", "token", lambda inputs, b, t: inputs["input_ids"][b, t].fill_(10)),
    ("token id -1", "token", lambda inputs, b, t: inputs["input_ids"][b, t].fill_(-1)),
]


def test_the_summary_refuses_exactly_what_the_flags_find():
    """Random corruptions of random tokens, 300 batches: refused iff one hits a real token of its kind. A padding token,
    a feature value past the modality's own columns, or a token id at a feature token never makes a batch fail."""
    config = PosAttnConfig(modalities=MODALITIES, hidden_size=16, num_attention_heads=2, num_hidden_layers=1)
    clean = packed_batch()
    mask, modality_ids = clean["attention_mask"].bool(), clean["modality_ids"]
    names = config.modality_names
    rng = random.Random(0)
    refused = accepted = 0
    for _ in range(300):
        inputs = {key: value.clone() for key, value in clean.items()}
        inputs["timestamps"] = inputs["timestamps"].double()
        expected = False
        for _ in range(rng.randint(1, 2)):
            name, kind, corrupt = rng.choice(CORRUPTIONS)
            b, t = rng.randrange(mask.shape[0]), rng.randrange(mask.shape[1])
            modality = names[int(modality_ids[b, t])] if mask[b, t] else None
            # every feature corruption touches column 0 or 1, inside both feature modalities' own columns
            hits = mask[b, t] and (kind == "any" or kind == "token" and modality == "text"
                                   or kind == "feature" and modality in ("audio", "video"))
            corrupt(inputs, b, t)
            expected |= bool(hits)
        if expected:
            with pytest.raises(ValueError):
                resolve(config, inputs)
            refused += 1
        else:
            resolve(config, inputs)
            accepted += 1
    assert refused > 50 and accepted > 50


def test_values_past_a_modalitys_own_columns_are_not_checked():
    config = PosAttnConfig(modalities=MODALITIES, hidden_size=16, num_attention_heads=2, num_hidden_layers=1)
    inputs = packed_batch()
    video = inputs["modality_ids"] == config.modality_names.index("video")
    inputs["input_values"][..., 2:][video] = math.nan  # video has 2 features; columns 2-3 are audio's
    resolve(config, inputs)
    inputs["input_values"][..., 1][video] = math.nan
    with pytest.raises(ValueError, match="Modality 'video'.*NaN or Inf"):
        resolve(config, inputs)


def test_what_the_sync_learns_is_exact():
    """Padding, each modality's tokens in the batch, and the highest position (given, or derived within each modality:
    past the highest, not the sequence length)."""
    config = PosAttnConfig(modalities=MODALITIES, hidden_size=16, num_attention_heads=2, num_hidden_layers=1)
    inputs = packed_batch()
    positions = resolve(config, inputs)
    assert positions.padded is True
    assert positions.token_counts == (9, 2, 5)
    assert positions.num_positions == 6  # the first sample's 6 audio frames
    derived = resolve(config, {key: value for key, value in inputs.items() if key != "position_ids"})
    assert derived.num_positions == 6 and torch.equal(derived.position_ids, positions.position_ids)
    unpadded = {key: value[1:, : int(inputs["attention_mask"][1].sum())] for key, value in inputs.items()}
    assert resolve(config, unpadded).padded is False


def test_times_implied_by_huge_positions_are_refused_naming_the_positions():
    """No timestamps given: a clockless modality's times are spread over the sample's duration, which position ids
    near int64's maximum push past float32; the error names `position_ids`, not the timestamps nobody gave."""
    config = PosAttnConfig(modalities={"slow": {"input_dim": 1, "sampling_rate": 0.1}, "text": {"vocab_size": 5}},
                           hidden_size=16, num_attention_heads=2, num_hidden_layers=1)
    inputs = {"input_values": torch.randn(1, 2, 1), "input_ids": torch.tensor([[0, 1]]),
              "modality_ids": torch.tensor([[0, 1]]), "position_ids": torch.full((1, 2), 2**63 - 1)}
    with pytest.raises(ValueError, match="times implied by `position_ids`.*sample 0 span more than float32"):
        resolve(config, inputs)


def test_num_positions_stays_above_positions_past_two_to_the_53():
    config = PosAttnConfig(modalities={"f": {"input_dim": 2, "sampling_rate": 10.0}}, hidden_size=16,
                           num_attention_heads=2, num_hidden_layers=1)
    highest = 2**53 + 1  # float64, which carries the one sync, rounds it to 2**53
    positions = resolve(config, {"input_values": torch.randn(1, 2, 2), "modality_ids": None,
                                 "position_ids": torch.tensor([[0, highest]])})
    assert positions.num_positions > highest


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_timestamps_are_taken_with_a_warning(dtype, monkeypatch):
    """Casting every floating input to the model's dtype is the ecosystem's idiom (transformers' own model tests do):
    half-precision times are accepted, with a warning that they were rounded; float32 and float64 ones without."""
    from modeling_posattn import validation_posattn

    warnings = []
    monkeypatch.setattr(validation_posattn.logger, "warning_once", warnings.append)
    config, batch = PosAttnConfig(modalities=MODALITIES), packed_batch()
    for precise in (torch.float64, torch.float32):
        resolve(config, dict(batch, timestamps=batch["timestamps"].to(precise)))
    assert warnings == []
    resolve(config, dict(batch, timestamps=batch["timestamps"].to(dtype)))
    assert len(warnings) == 1 and f"`timestamps` of dtype {dtype} round the times" in warnings[0]

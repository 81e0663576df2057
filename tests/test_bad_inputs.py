"""Every bad input of issue 12 gives a clear, catchable error before work starts; a few look-alikes are accepted and
correct. One table row per case (`BAD_INPUTS`), a seeded bounded config fuzz, and the time-arithmetic checks."""

import json
import math
import os
import random
import warnings

import numpy as np
import pytest
import torch

from modeling_posattn import PosAttnConfig, PosAttnForSequenceClassification, PosAttnModel, PosAttnProcessor
from modeling_posattn.configuration_posattn import (
    ABSOLUTE_POSITION_ENCODING_NAMES,
    AbsolutePositionEncodingName,
    PositionFusionName,
    RelativePositionEncodingName,
)
from modeling_posattn.modeling_posattn import check_dense_bias_size
from modeling_posattn.positional_encodings import (
    ABSOLUTE_POSITION_ENCODINGS,
    POSITION_FUSIONS,
    RELATIVE_POSITION_ENCODINGS,
)
from typing import get_args

MODALITIES = {"audio": {"input_dim": 4, "sampling_rate": 100.0}, "text": {"vocab_size": 10}}
SMALL = dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32)


def config(**overrides) -> PosAttnConfig:
    return PosAttnConfig(**{"modalities": MODALITIES, **SMALL, "num_labels": 3, **overrides})


def processor(**kwargs) -> PosAttnProcessor:
    return PosAttnProcessor(modalities=MODALITIES, **kwargs)


def sample(frames: int = 6, words: int = 3, **extra) -> dict:
    rng = np.random.default_rng(frames)
    return {"audio": rng.normal(size=(frames, 4)), "text": rng.integers(0, 10, size=words), **extra}


def batch(**overrides) -> dict:
    inputs = dict(processor()([sample(6, 3), sample(4, 2)], return_tensors="pt"))
    inputs.update(overrides)
    return inputs


_MODELS: dict = {}


def model(**overrides):
    """Cached tiny classifiers (eval mode) by config overrides."""
    key = json.dumps(overrides, sort_keys=True)
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = PosAttnForSequenceClassification(config(**overrides)).eval()
    return _MODELS[key]


def forward(inputs=None, overrides=None, **batch_overrides):
    with torch.no_grad():
        return model(**(overrides or {}))(**(inputs if inputs is not None else batch(**batch_overrides)))


def with_first_row_changed(key, value):
    rows = processor()([sample(6, 3), sample(4, 2)], padding=False)
    rows = [{k: rows[k][i] for k in rows} for i in range(2)]
    rows[1][key] = value(rows[1][key]) if callable(value) else value
    return processor().pad(rows)


def rows_without(key):
    rows = processor()([sample(6, 3), sample(4, 2)], padding=False)
    rows = [{k: rows[k][i] for k in rows} for i in range(2)]
    del rows[1][key]
    return processor().pad(rows)


def corrupted_checkpoint(tmp_path):
    model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return PosAttnForSequenceClassification.from_pretrained(tmp_path)


def config_without_modality_names(tmp_path):
    config().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["modality_names"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    return PosAttnConfig.from_pretrained(tmp_path)


def long_sample(encoding):
    """One 100 000-frame sample under a score-bias encoding on the dense (sdpa) path: refused before allocating."""
    cfg = config(relative_position_encoding=encoding)
    cfg._attn_implementation = "sdpa"
    check_dense_bias_size(cfg, 1, 100_000, torch.float32)


# (case, the bad input as a callable taking tmp_path, exception type, words of the message)
BAD_INPUTS = [
    # model forward
    ("attention_mask wrong shape", lambda _: forward(attention_mask=torch.ones(2, 3)), ValueError, r"`attention_mask` has shape \(2, 3\)"),
    ("4-D attention mask", lambda _: forward(attention_mask=batch()["attention_mask"][:, None, None, :]), ValueError, "attention_mask.*4-D additive mask"),
    ("attention_mask of additive values", lambda _: forward(attention_mask=batch()["attention_mask"] * -1e9), ValueError, "attention_mask.*1.*0"),
    ("position_ids wrong shape", lambda _: forward(position_ids=torch.zeros(2, 3, dtype=torch.long)), ValueError, "`position_ids` has shape"),
    ("position_ids of floats", lambda _: forward(position_ids=batch()["position_ids"].float()), TypeError, "`position_ids`.*integer"),
    ("timestamps wrong shape", lambda _: forward(timestamps=torch.zeros(9)), ValueError, "`timestamps` has shape"),
    ("timestamps NaN", lambda _: forward(timestamps=batch()["timestamps"].index_fill(1, torch.tensor([0]), math.nan)), ValueError, "`timestamps` holds NaN"),
    ("input_ids wrong shape", lambda _: forward(input_ids=torch.zeros(2, 3, dtype=torch.long)), ValueError, "`input_ids` has shape"),
    ("input_ids out of vocabulary", lambda _: forward(input_ids=batch()["input_ids"] + 10), ValueError, r"Modality 'text'.*\[0, 10\)"),
    ("input_ids of floats", lambda _: forward(input_ids=batch()["input_ids"].float()), TypeError, "`input_ids`.*integer"),
    ("input_values too narrow", lambda _: forward(input_values=batch()["input_values"][..., :2]), ValueError, "Modality 'audio'.*>= 4"),
    ("input_values missing for a strided stem", lambda _: forward(overrides={"modalities": {**MODALITIES, "audio": {"input_dim": 4, "sampling_rate": 100.0, "stem": {"type": "linear", "stride": 2}}}}, input_values=None), ValueError, r"Modality 'audio'.*>= 8\) features are required"),
    ("input_values complex", lambda _: forward(input_values=batch()["input_values"].to(torch.complex64)), TypeError, "real-valued"),
    ("negative position_ids under learned", lambda _: forward(overrides={"absolute_position_encoding": "learned"}, position_ids=batch()["position_ids"] - 1), ValueError, "`position_ids` must be >= 0.*sample 0, token 0"),
    ("position_ids past the learned table", lambda _: forward(overrides={"absolute_position_encoding": "learned", "max_position_embeddings": 4}), ValueError, "Modality 'audio'.*exceed the `learned` position table"),
    ("features of 1e30", lambda _: forward(input_values=batch()["input_values"].index_fill(2, torch.tensor([1]), 1e30)), ValueError, "Modality 'audio'.*magnitudes above"),
    ("features NaN", lambda _: forward(input_values=batch()["input_values"].index_fill(2, torch.tensor([1]), math.nan)), ValueError, "Modality 'audio'.*NaN or Inf"),
    ("integer features at int64's minimum", lambda _: forward(input_values=batch()["input_values"].long().index_fill(2, torch.tensor([1]), torch.iinfo(torch.int64).min)), ValueError, "Modality 'audio'.*magnitudes above"),
    ("float16 features holding Inf", lambda _: forward(input_values=batch()["input_values"].half().index_fill(2, torch.tensor([1]), math.inf)), ValueError, "Modality 'audio'.*NaN or Inf"),
    ("features of -1e30", lambda _: forward(input_values=batch()["input_values"].index_fill(2, torch.tensor([1]), -1e30)), ValueError, "Modality 'audio'.*magnitudes above"),
    ("batch size 0", lambda _: forward({k: v[:0] for k, v in batch().items()}), ValueError, "Empty batch"),
    ("modality id out of range", lambda _: forward(modality_ids=batch()["modality_ids"] + 5), ValueError, "`modality_ids` holds 5"),
    ("sample without tokens", lambda _: forward(attention_mask=batch()["attention_mask"] * torch.tensor([[1], [0]])), ValueError, r"Sample\(s\) \[1\] have no tokens"),
    ("missing modality_ids with two modalities", lambda _: forward(modality_ids=None), ValueError, "`modality_ids` is required"),
    ("input_ids missing for a token modality", lambda _: forward(input_ids=None), ValueError, "Modality 'text': `input_ids` must be an integer tensor of token ids, got None"),
    ("attention_mask holding 2", lambda _: forward(attention_mask=batch()["attention_mask"] * 2), ValueError, "attention_mask.*1.*0"),
    ("attention_mask of 0.5", lambda _: forward(attention_mask=batch()["attention_mask"] * 0.5), ValueError, "attention_mask.*1.*0"),
    ("timestamps spanning past float32", lambda _: forward(timestamps=batch()["timestamps"].double().index_fill(1, torch.tensor([1]), 1e39)), ValueError, "`timestamps` of sample 0 span more than float32"),
    ("attention_mask of uint16", lambda _: forward(attention_mask=batch()["attention_mask"].to(torch.uint16)), TypeError, "`attention_mask` of dtype torch.uint16 is not supported"),
    ("input_ids of uint32", lambda _: forward(input_ids=batch()["input_ids"].to(torch.uint32)), TypeError, "`input_ids` of dtype torch.uint32 is not supported"),
    ("input_values of uint16", lambda _: forward(input_values=batch()["input_values"].abs().to(torch.uint16)), TypeError, "`input_values` of dtype torch.uint16 is not supported"),
    ("position_ids past 2**53", lambda _: forward(overrides={"absolute_position_encoding": "learned"}, position_ids=batch()["position_ids"] + 2**53 + 1), ValueError, "exceed the `learned` position table"),
    ("integer features one above the bound", lambda _: forward(input_values=batch()["input_values"].long().index_fill(2, torch.tensor([1]), 10**12 + 1)), ValueError, "Modality 'audio'.*magnitudes above"),
    # labels
    ("class id 7 of 3", lambda _: forward(labels=torch.tensor([7, 0])), ValueError, r"class ids in \[0, 3\).*got 7 for sample 0"),
    ("class id -1", lambda _: forward(labels=torch.tensor([0, -1])), ValueError, r"class ids in \[0, 3\).*got -1 for sample 1"),
    ("string labels", lambda _: processor()([sample(label="cat")]), TypeError, "`labels` must be numbers.*label2id"),
    ("float labels to a single-label head", lambda _: forward(labels=torch.tensor([1.0, 0.5])), TypeError, "single_label_classification.*integer class ids"),
    ("labels of wrong shape", lambda _: forward(labels=torch.tensor([[1], [0]])), ValueError, r"Single-label `labels` must be \(batch,\)"),
    ("NaN regression label", lambda _: forward(overrides={"num_labels": 1}, labels=torch.tensor([1.0, math.nan])), ValueError, "Regression `labels` hold NaN"),
    ("multi-label target of 2", lambda _: forward(overrides={"problem_type": "multi_label_classification"}, labels=torch.tensor([[0, 1, 2], [0, 0, 1]])), ValueError, "Multi-label `labels` must be 0/1"),
    # config
    ("num_attention_heads=0", lambda _: config(num_attention_heads=0), ValueError, "`num_attention_heads` must be a positive int"),
    ("hidden_act='swishy'", lambda _: config(hidden_act="swishy"), ValueError, "hidden_act.*expected one of"),
    ("unknown absolute encoding", lambda _: config(absolute_position_encoding="fancy"), ValueError, "absolute_position_encoding.*expected one of"),
    ("unknown rope_type", lambda _: config(relative_position_encoding="rope", rope_parameters={"rope_type": "nope", "rope_theta": 1e4}), ValueError, "rope_type.*must be one of"),
    ("yarn without factor", lambda _: config(relative_position_encoding="rope", rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}), ValueError, "Missing required keys.*factor"),
    ("dynamic NTK with head_dim 2", lambda _: config(relative_position_encoding="rope", hidden_size=4, rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}), ValueError, "cannot be used with head_dim 2"),
    ("negative max_position_embeddings", lambda _: config(max_position_embeddings=-1), ValueError, "`max_position_embeddings` must be a positive int"),
    ("relative_attention_num_buckets=0", lambda _: config(relative_attention_num_buckets=0), ValueError, "`relative_attention_num_buckets` must be an even int >= 4"),
    ("relative_attention_num_buckets=2", lambda _: config(relative_attention_num_buckets=2), ValueError, "`relative_attention_num_buckets` must be an even int >= 4"),
    ("relative_attention_max_distance=0", lambda _: config(relative_attention_max_distance=0), ValueError, "`relative_attention_max_distance` \\(0\\) must exceed"),
    ("max_distance == num_buckets // 4", lambda _: config(relative_attention_max_distance=8), ValueError, "`relative_attention_max_distance` \\(8\\) must exceed"),
    ("infinite sampling_rate", lambda _: config(modalities={"audio": {"input_dim": 4, "sampling_rate": math.inf}}), ValueError, "Modality 'audio'.*sampling_rate.*finite"),
    ("infinite time_units_per_second", lambda _: config(time_units_per_second=math.inf), ValueError, "`time_units_per_second` must be a finite positive"),
    ("negative rope_theta", lambda _: config(relative_position_encoding="rope", rope_parameters={"rope_type": "default", "rope_theta": -1.0}), ValueError, "rope_theta.*finite positive"),
    ("negative layer_norm_eps", lambda _: config(layer_norm_eps=-1e-5), ValueError, "`layer_norm_eps` must be a finite positive"),
    ("multiscale_num_bands=0", lambda _: config(multiscale_num_bands=0), ValueError, "`multiscale_num_bands` must be a positive int"),
    ("multiscale_num_bands<0", lambda _: config(multiscale_num_bands=-3), ValueError, "`multiscale_num_bands` must be a positive int"),
    ("dropout above 1", lambda _: config(hidden_dropout_prob=1.5), ValueError, "`hidden_dropout_prob` must be a probability"),
    ("bool input_dim", lambda _: config(modalities={"audio": {"input_dim": True}}), TypeError, "Modality 'audio'.*`input_dim` must be an int"),
    ("string sampling_rate", lambda _: config(modalities={"audio": {"input_dim": 4, "sampling_rate": "100"}}), TypeError, "Modality 'audio'.*sampling_rate.*must be a number"),
    ("NaN sampling_rate", lambda _: config(modalities={"audio": {"input_dim": 4, "sampling_rate": math.nan}}), ValueError, "Modality 'audio'.*sampling_rate.*finite"),
    ("bool hidden_size", lambda _: config(hidden_size=True), TypeError, "hidden_size.*expected int"),
    # processor and collator
    ("max_tokens=-1", lambda _: processor(max_tokens=-1), ValueError, "`max_tokens` for modality 'audio' must be positive"),
    ("misspelled modality in max_tokens", lambda _: processor(max_tokens={"audoi": 3}), ValueError, "`max_tokens` names unknown modality 'audoi'"),
    ("infinite max_seconds", lambda _: processor(max_seconds=math.inf), ValueError, "`max_seconds` for modality 'audio' must be positive"),
    ("misspelled modality in fit()", lambda _: processor().fit([{"audoi": np.zeros((3, 4))}]), ValueError, "fit\\(\\): sample 0 has unknown modality 'audoi'"),
    ("fit() on features of the wrong width", lambda _: processor().fit([{"audio": np.zeros((4, 3))}]), ValueError, "fit\\(\\): sample 0, modality 'audio'.*shape \\(T, 4\\)"),
    ("feature of 1e39", lambda _: processor()([{"audio": np.full((2, 4), 1e39)}]), ValueError, "modality 'audio'.*exceed 1e\\+12"),
    ("hand-edited std of 0", lambda _: processor(normalization={"audio": {"mean": [0.0] * 4, "std": [1.0, 0.0, 1.0, 1.0]}}), ValueError, "`normalization` for modality 'audio'.*stds finite and > 0"),
    ("complex features", lambda _: processor()([{"audio": np.ones((2, 4)) * 1j}]), ValueError, "modality 'audio'.*real numeric"),
    ("ragged feature lists", lambda _: processor()([{"audio": [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]}]), ValueError, "modality 'audio'.*frames differ in length"),
    ("rows disagreeing on keys", lambda _: rows_without("input_ids"), ValueError, "Row 1 has keys .* but row 0 has"),
    ("rows disagreeing on widths", lambda _: with_first_row_changed("input_values", lambda v: np.asarray(v)[:, :2]), ValueError, "Row 1: `input_values` has shape"),
    ("rows with short position_ids", lambda _: with_first_row_changed("position_ids", lambda v: v[:-1]), ValueError, "Row 1: `position_ids` has shape"),
    # loading
    ("config.json without modality_names", config_without_modality_names, ValueError, "no `modality_names`"),
    ("corrupted model.safetensors", corrupted_checkpoint, OSError, "Cannot read .*model.safetensors.*corrupted or truncated"),
    # size
    ("100 000 frames under alibi", lambda _: long_sample("alibi"), ValueError, "GiB.*flex_attention.*max_tokens"),
    ("100 000 frames under relative_bias", lambda _: long_sample("relative_bias"), ValueError, "GiB.*flex_attention.*max_tokens"),
]


@pytest.mark.parametrize(("case", "make", "error", "words"), BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_gives_a_clear_error(case, make, error, words, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=words):
            make(tmp_path)


# Look-alikes that are valid: accepted, and correct.


def test_numpy_scalars_are_valid_numbers():
    cfg = PosAttnConfig(modalities={"audio": {"input_dim": np.int64(4), "sampling_rate": np.float32(100.0)}},
                        hidden_size=np.int64(16), num_attention_heads=2, layer_norm_eps=np.float32(1e-5))
    assert type(cfg.modalities["audio"]["input_dim"]) is int and type(cfg.modalities["audio"]["sampling_rate"]) is float
    assert type(cfg.hidden_size) is int
    PosAttnConfig.from_dict(json.loads(cfg.to_json_string()))  # serialisable


def test_integer_features_equal_float_features():
    inputs = batch(input_values=batch()["input_values"].round())
    as_int = dict(inputs, input_values=inputs["input_values"].long())
    torch.testing.assert_close(forward(as_int).logits, forward(inputs).logits)


def test_features_at_the_bound_are_accepted():
    """The bound is inclusive, exactly, for integer features too (their extremes are not rounded through a float32)."""
    for values in (batch()["input_values"].long().index_fill(2, torch.tensor([1]), 10**12),
                   batch()["input_values"].double().index_fill(2, torch.tensor([1]), -1e12)):
        assert torch.isfinite(forward(input_values=values).logits).all()


def test_float_label_batch_never_changes_the_config():
    classifier = model()
    with pytest.raises(TypeError):
        forward(labels=torch.tensor([1.0, 0.0]))
    assert classifier.config.problem_type is None
    assert torch.isfinite(forward(labels=torch.tensor([1, 0])).loss)
    assert torch.isfinite(forward(labels=torch.tensor([1, -100])).loss)  # transformers' ignore index still works


def test_registries_hold_exactly_the_config_choices():
    assert tuple(ABSOLUTE_POSITION_ENCODINGS) == get_args(AbsolutePositionEncodingName) == ABSOLUTE_POSITION_ENCODING_NAMES
    assert tuple(RELATIVE_POSITION_ENCODINGS) == get_args(RelativePositionEncodingName)
    assert tuple(POSITION_FUSIONS) == get_args(PositionFusionName)


def test_config_choices_are_checked_on_assignment_and_save(tmp_path):
    cfg = config()
    with pytest.raises(ValueError, match="pooling"):
        cfg.pooling = "max"
    cfg.__dict__["relative_attention_num_buckets"] = 3  # bypasses assignment checks: save still refuses it
    with pytest.raises(ValueError, match="relative_attention_num_buckets"):
        cfg.save_pretrained(tmp_path)


# Time arithmetic


def shifted_outputs(encoding: str, t0: float) -> float:
    """Max |difference| of the last hidden states of one two-modality batch at clock start 0 and at `t0` seconds."""
    mods = {"audio": {"input_dim": 4, "sampling_rate": 100.0}, "video": {"input_dim": 3, "sampling_rate": 25.0}}
    torch.manual_seed(0)
    net = PosAttnModel(PosAttnConfig(modalities=mods, **SMALL, absolute_position_encoding="none",
                                     relative_position_encoding=encoding)).eval()
    proc = PosAttnProcessor(modalities=mods)
    rng = np.random.default_rng(0)
    frames = [{"audio": rng.normal(size=(50, 4)), "video": rng.normal(size=(12, 3))} for _ in range(2)]

    def run(start):
        samples = [dict(f, timestamps={"audio": start + np.arange(50) / 100.0, "video": start + 0.013 + np.arange(12) / 25.0})
                   for f in frames]
        with torch.no_grad():
            return net(**proc(samples, return_tensors="pt")).last_hidden_state

    return float((run(0.0) - run(t0)).abs().max())


# relative_bias included: with times relative to the sample's start, distances that fall on rounding ties round the
# same way at every clock start.
SHIFT_CASES = [name for name in RELATIVE_POSITION_ENCODINGS if name != "none"]


@pytest.mark.parametrize("encoding", SHIFT_CASES)
@pytest.mark.parametrize("t0", [1e3, 1e6])
def test_relative_encodings_are_shift_invariant(encoding, t0):
    assert shifted_outputs(encoding, t0) <= 1e-5


def test_clockless_modality_spreads_over_the_sample_span():
    times = processor()([{"audio": np.zeros((100, 4)), "text": [1, 2, 3, 4],
                          "timestamps": {"audio": 3600.0 + np.arange(100) / 100.0}}])["timestamps"][0]
    text = np.asarray(times[100:])
    assert 3600.0 < text.min() and text.max() < 3601.0
    np.testing.assert_allclose(text, 3600.0 + (np.arange(4) + 0.5) / 4.0)


# Bounded config fuzz: random (often invalid) configs; each is refused at construction or runs to finite outputs.

FUZZ_CONFIGS = int(os.environ.get("POSATTN_FUZZ_CONFIGS", 500))  # about 15 s on one CPU core


def random_config(rng: random.Random) -> dict:
    """Mostly valid settings; each field is out of range or of a wrong kind now and then (about one config in three
    holds at least one bad field)."""

    def pick(valid, invalid=()):
        return rng.choice(invalid) if invalid and rng.random() < 0.03 else rng.choice(valid)

    heads = pick((1, 2, 4), (0, -1))
    rope_type = pick(("default", "default", "linear", "dynamic", "yarn", "llama3"), ("unknown",))
    rope = {"rope_type": rope_type, "rope_theta": pick((10000.0, 100.0, 1e6), (-1.0, math.inf))}
    if rope_type != "default" and rng.random() < 0.97:
        rope["factor"] = pick((2.0, 4.0, 1.0))
    if rope_type == "llama3" and rng.random() < 0.97:
        rope.update(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8)
    buckets = pick((32, 8, 4, 6, 64), (2, 0, 5, 3))
    modalities = {"audio": {"input_dim": pick((1, 3, 4), (0, 2.5)), "sampling_rate": pick((100.0, 16000.0, 0.5, None), (0.0, math.inf, math.nan))},
                  "text": {"vocab_size": pick((1, 7, 50), (0,))}}
    if rng.random() < 0.3:
        modalities = {"video": {"input_dim": 2, "sampling_rate": 25.0}, **modalities}
    return dict(
        modalities=modalities,
        hidden_size=heads * pick((2, 4, 8)) if heads > 0 else 8,
        num_attention_heads=heads,
        num_hidden_layers=pick((1, 2), (0,)),
        intermediate_size=pick((8, 16), (0,)),
        hidden_act=pick(("gelu", "relu", "silu", "tanh", "gelu_new", "quick_gelu"), ("swishy",)),
        absolute_position_encoding=pick(ABSOLUTE_POSITION_ENCODING_NAMES, ("fancy",)),
        relative_position_encoding=pick(get_args(RelativePositionEncodingName), (None,)),
        position_fusion=pick(get_args(PositionFusionName), ("mul",)),
        pooling=pick(("mean", "cls"), ("max",)),
        max_position_embeddings=pick((64, 16, 512), (0, -1)),
        rope_parameters=rope,
        time_units_per_second=pick((25.0, 1.0, 1000.0, 0.01), (0.0, -5.0, math.inf)),
        conditional_kernel_size=pick((1, 3, 5), (2, 0)),
        multiscale_num_bands=pick((None, 1, 3, 64), (0, -2)),
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=pick((buckets // 4 + 1, 128, 10_000), (1, buckets // 4, 0)),
        layer_norm_eps=pick((1e-5, 1e-12), (0.0, math.nan)),
        hidden_dropout_prob=pick((0.0, 0.1), (1.5, -0.1)),
        num_labels=3,
    )


def test_config_fuzz_refuses_or_runs_finite():
    rng = random.Random(12)
    refused = ran = 0
    for index in range(FUZZ_CONFIGS):
        settings = random_config(rng)
        try:
            cfg = PosAttnConfig(**settings)
        except (ValueError, TypeError):
            refused += 1
            continue
        cfg._attn_implementation = rng.choice(["eager", "sdpa"])
        torch.manual_seed(index)
        net = PosAttnForSequenceClassification(cfg).eval()
        proc = PosAttnProcessor.from_model_config(cfg)
        samples = []
        for length in (rng.randint(1, 12), rng.randint(1, 5)):
            one = {}
            for name, spec in cfg.modalities.items():
                if spec.get("input_dim"):
                    one[name] = np.random.default_rng(length).normal(size=(length, spec["input_dim"]))
                else:
                    one[name] = np.arange(length) % spec["vocab_size"]
            samples.append(one)
        inputs = proc(samples, return_tensors="pt")
        if cfg.absolute_position_encoding == "learned" and int(inputs["position_ids"].max()) >= cfg.max_position_embeddings:
            with pytest.raises(ValueError, match="learned"):
                net(**inputs)
            refused += 1
            continue
        with torch.no_grad():
            output = net(**inputs, labels=torch.tensor([0, 2]))
        assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss), (index, settings)
        ran += 1
    print(f"config fuzz: {FUZZ_CONFIGS} configs, {refused} refused with a clear error, {ran} ran to finite outputs")
    assert refused + ran == FUZZ_CONFIGS and min(refused, ran) >= FUZZ_CONFIGS // 10, (refused, ran)

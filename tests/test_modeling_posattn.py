"""PosAttnModel / PosAttnForSequenceClassification: position, padding, length, backends, round trip, bad input."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import MODALITIES, batch_of, build_model, random_samples, tiny_config

from modeling_posattn import PosAttnConfig, PosAttnForSequenceClassification, PosAttnModel
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification


def permute_modality(sample: dict, name: str, seed: int = 1) -> dict:
    permuted = dict(sample)
    order = np.random.default_rng(seed).permutation(len(sample[name]))
    permuted[name] = np.asarray(sample[name])[order]
    return permuted


@torch.no_grad()
def test_sinusoidal_encodes_position_and_none_does_not(samples):
    """Permuting one modality's tokens changes the pooled output with `sinusoidal`, and not with `none` + mean pooling."""
    permuted = [permute_modality(samples[0], "audio")]
    for encoding, should_change in (("sinusoidal", True), ("none", False)):
        model = build_model(absolute_position_encoding=encoding, pooling="mean")
        original = model(**batch_of(samples[:1])).pooler_output
        shuffled = model(**batch_of(permuted)).pooler_output
        changed = not torch.allclose(original, shuffled, atol=1e-5)
        assert changed == should_change, encoding


@pytest.mark.parametrize("encoding", ["learned", "sinusoidal"])
@torch.no_grad()
def test_padding_slots_may_hold_any_position_id(encoding):
    """What padding holds in `position_ids` (here past the learned table, and negative) is never looked up."""
    model = build_model(absolute_position_encoding=encoding, max_position_embeddings=128)
    inputs = batch_of(random_samples())
    expected = model(**inputs).last_hidden_state
    padding = inputs["attention_mask"] == 0
    assert padding.any()
    for garbage in (10**6, -5):
        inputs["position_ids"] = inputs["position_ids"].masked_fill(padding, garbage)
        torch.testing.assert_close(model(**inputs).last_hidden_state, expected, atol=0, rtol=0)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@torch.no_grad()
def test_padding_invariance(attn_implementation, pooling):
    """A sample's outputs do not depend on what it is batched with or how far it is padded (1e-5, fp32)."""
    samples = random_samples(lengths=((12, 3, 4), (90, 22, 11), (5, 0, 2)))
    model = build_model(attn_implementation=attn_implementation, pooling=pooling,
                        absolute_position_encoding="sinusoidal", relative_position_encoding="rope")
    alone = model(**batch_of(samples[:1]))
    batched = model(**batch_of(samples))
    real = alone.last_hidden_state.shape[1]
    torch.testing.assert_close(batched.pooler_output[0], alone.pooler_output[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.last_hidden_state[0, :real], alone.last_hidden_state[0], atol=1e-5, rtol=0)
    # padded further than needed, with garbage in the padding slots
    inputs = batch_of(samples[:1])
    extra = 7
    for key, value in inputs.items():
        pad = torch.randn(*value.shape[:1], extra, *value.shape[2:]) if value.is_floating_point() else torch.randint(0, 3, (value.shape[0], extra))
        inputs[key] = torch.cat((value, pad.to(value.dtype)), dim=1)
    inputs["attention_mask"][:, -extra:] = 0
    padded = model(**inputs)
    torch.testing.assert_close(padded.pooler_output, alone.pooler_output, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_class", [PosAttnModel, PosAttnForSequenceClassification])
@torch.no_grad()
def test_eager_and_sdpa_agree(model_class, samples):
    inputs = batch_of(samples)
    eager = build_model(model_class, attn_implementation="eager")
    sdpa = build_model(model_class, attn_implementation="sdpa")
    key = "last_hidden_state" if model_class is PosAttnModel else "logits"
    torch.testing.assert_close(sdpa(**inputs)[key], eager(**inputs)[key], atol=1e-5, rtol=0)


@torch.no_grad()
def test_output_locates_each_modality(samples):
    model = build_model(pooling="cls")
    inputs = batch_of(samples)
    output = model(**inputs)
    assert output.last_hidden_state.shape[1] == output.modality_ids.shape[1] == inputs["modality_ids"].shape[1] + 1
    assert (output.modality_ids[:, 0] == -1).all()
    audio = model.config.modality_names.index("audio")
    for row, sample in enumerate(samples):
        assert int((output.modality_ids[row] == audio).sum()) == len(sample.get("audio", []))
    assert (output.modality_ids[:, 1:][inputs["attention_mask"] == 0] == -1).all()


def test_twenty_thousand_tokens_without_quadratic_memory():
    """A 20 000-token sample runs under `sinusoidal` (no max_len) with peak memory far under the 4 GB (per head)
    that the seed's explicit L x L softmax would need: the sdpa path never materialises the score matrix."""
    script = textwrap.dedent(
        """
        import resource, torch, numpy as np
        from modeling_posattn import PosAttnConfig, PosAttnModel, PosAttnProcessor
        mods = {"audio": {"input_dim": 4, "sampling_rate": 100.0}}
        config = PosAttnConfig(modalities=mods, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               num_hidden_layers=1, absolute_position_encoding="sinusoidal", attn_implementation="sdpa")
        model = PosAttnModel(config).eval()
        batch = PosAttnProcessor(modalities=mods)([{"audio": np.random.randn(20000, 4)}], return_tensors="pt")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            out = model(**batch).last_hidden_state
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert out.shape == (1, 20000, 32) and torch.isfinite(out).all()
        print((after - before) / 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    growth_mb = float(result.stdout.strip().splitlines()[-1])
    one_score_matrix_mb = 20000 * 20000 * 4 / 2**20  # 1526 MB for a single head
    assert growth_mb < 0.25 * one_score_matrix_mb, f"peak memory grew by {growth_mb:.0f} MB"


def test_save_and_reload_round_trip(tmp_path, samples):
    inputs = batch_of(samples)
    for model_class, auto_class in ((PosAttnModel, AutoModel), (PosAttnForSequenceClassification, AutoModelForSequenceClassification)):
        model = build_model(model_class, absolute_position_encoding="multiscale", relative_position_encoding="time_rope",
                            position_fusion="gated")
        folder = tmp_path / model_class.__name__
        model.save_pretrained(folder)
        assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
        reloaded = auto_class.from_pretrained(folder).eval()
        assert type(reloaded) is model_class
        with torch.no_grad():
            first, second = model(**inputs), reloaded(**inputs)
        assert torch.equal(first[0], second[0])
        config = json.loads((folder / "config.json").read_text())
        assert config["modality_names"] == ["video", "audio", "text"]
        assert AutoConfig.from_pretrained(folder).modality_names == ["video", "audio", "text"]


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", torch.tensor([0, 2, 1])),
        ("multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])),
        ("regression", torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.1, 0.2], [1.0, 1.0, 1.0]])),
    ],
)
def test_classification_problem_types(problem_type, labels, samples):
    model = build_model(PosAttnForSequenceClassification, problem_type=problem_type)
    model.train()
    output = model(**batch_of(samples), labels=labels)
    assert output.logits.shape == (3, 3) and output.loss.ndim == 0 and torch.isfinite(output.loss)
    output.loss.backward()
    assert model.classifier.weight.grad is not None


def test_single_output_regression(samples):
    model = build_model(PosAttnForSequenceClassification, num_labels=1)
    output = model(**batch_of(samples), labels=torch.tensor([0.5, -1.0, 2.0]))
    assert model.problem_type == "regression" and model.config.problem_type is None and output.logits.shape == (3, 1)


def test_gradient_checkpointing_matches(samples):
    inputs = batch_of(samples)
    grads = []
    for checkpointing in (False, True):
        model = build_model(PosAttnForSequenceClassification, relative_position_encoding="alibi")
        model.train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
        grads.append(model.posattn.layers[0].self_attn.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_hidden_states_and_attentions_are_recorded(samples):
    model = build_model(attn_implementation="eager")
    output = model(**batch_of(samples), output_hidden_states=True, output_attentions=True)
    assert len(output.hidden_states) == model.config.num_hidden_layers + 1
    assert len(output.attentions) == model.config.num_hidden_layers
    assert output.attentions[0].shape[1] == model.config.num_attention_heads


# ---------------------------------------------------------------------------------------------------------------------
# Bad input reaching the model directly (the processor's own: test_processing_posattn.py, test_input_checks_posattn.py)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def model_and_inputs(samples):
    return build_model(), batch_of(samples)


def test_fully_padded_row_is_rejected(model_and_inputs):
    model, inputs = model_and_inputs
    inputs["attention_mask"][1] = 0
    with pytest.raises(ValueError, match=r"Sample\(s\) \[1\] have no tokens"):
        model(**inputs)


def test_non_finite_features_are_rejected_with_modality(model_and_inputs):
    model, inputs = model_and_inputs
    audio = model.config.modality_names.index("audio")
    row, col = (inputs["modality_ids"] == audio).nonzero()[0].tolist()
    inputs["input_values"][row, col, 0] = float("nan")
    with pytest.raises(ValueError, match="Modality 'audio'.*NaN or Inf"):
        model(**inputs)


@pytest.mark.parametrize("value", [math.inf, -math.inf, 1e30])
def test_infinite_and_huge_features_are_rejected_with_modality(model_and_inputs, value):
    model, inputs = model_and_inputs
    video = model.config.modality_names.index("video")
    row, col = (inputs["modality_ids"] == video).nonzero()[-1].tolist()
    inputs["input_values"][row, col, 5] = value
    with pytest.raises(ValueError, match=f"Modality 'video'.*sample {row}, token {col}"):
        model(**inputs)


@pytest.mark.parametrize("stem", [None, {"type": "conv", "kernel_size": 3}, {"type": "patch", "patch_size": [1, 2]}])
def test_values_outside_a_tokens_own_features_are_not_checked(samples, stem):
    """Columns past a narrower modality's width, token-modality positions and padding hold arbitrary values: the value
    check must not refuse them, and no output or gradient may depend on them (0 * NaN is NaN: stems mask with where)."""
    modalities = {name: dict(spec, stem=stem) if "input_dim" in spec else spec for name, spec in MODALITIES.items()}
    model, inputs = build_model(modalities=modalities), batch_of(samples, modalities)
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state
    names = model.config.modality_names
    values = inputs["input_values"]
    audio = (inputs["modality_ids"] == names.index("audio")) & inputs["attention_mask"].bool()
    text = (inputs["modality_ids"] == names.index("text")) & inputs["attention_mask"].bool()
    assert audio.any() and text.any() and not inputs["attention_mask"].bool().all()
    values[..., 4:] = torch.where(audio[..., None], math.nan, values[..., 4:])  # audio uses 4 of 6 columns
    values[:] = torch.where(text[..., None], math.inf, values)
    values[:] = torch.where(~inputs["attention_mask"].bool()[..., None], math.nan, values)
    with torch.no_grad():
        output = model(**inputs).last_hidden_state
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(output[mask], expected[mask])
    model(**inputs).last_hidden_state[mask].sum().backward()
    assert all(parameter.grad.isfinite().all() for parameter in model.parameters() if parameter.grad is not None)


def test_narrow_features_are_rejected_with_modality(model_and_inputs):
    model, inputs = model_and_inputs
    inputs["input_values"] = inputs["input_values"][..., :4]
    with pytest.raises(ValueError, match="Modality 'video'.*>= 6"):
        model(**inputs)


def test_float_token_ids_are_rejected(model_and_inputs):
    model, inputs = model_and_inputs
    inputs["input_ids"] = inputs["input_ids"].float()
    with pytest.raises(TypeError, match="input_ids.*integer"):  # a wrong dtype is a TypeError
        model(**inputs)


def test_unknown_modality_id_is_rejected(model_and_inputs):
    model, inputs = model_and_inputs
    inputs["modality_ids"][0, 0] = 7
    with pytest.raises(ValueError, match="outside 0..2"):
        model(**inputs)


def test_config_rejects_bad_modality_spec():
    with pytest.raises(ValueError, match="Modality 'audio'.*exactly one of"):
        PosAttnConfig(modalities={"audio": {"sampling_rate": 100.0}})
    with pytest.raises(ValueError, match="absolute_position_encoding"):
        tiny_config(absolute_position_encoding="fancy")
    with pytest.raises(ValueError, match="Modality 'audio'.*sampling_rate"):
        PosAttnConfig(modalities={"audio": {"input_dim": 3, "sampling_rate": -1}})


def test_modalities_spec_is_kept(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path)
    assert PosAttnConfig.from_pretrained(tmp_path).modalities == MODALITIES


def test_a_saved_config_from_before_unit_scale_loads_without_it(tmp_path):
    """Checkpoints saved before `unit_scale_embeddings` existed keep their computation; new configs default to it."""
    import json

    config = PosAttnConfig(modalities={"audio": {"input_dim": 4, "sampling_rate": 100.0}})
    assert config.unit_scale_embeddings
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert PosAttnConfig.from_pretrained(tmp_path).unit_scale_embeddings
    saved.pop("unit_scale_embeddings")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert not PosAttnConfig.from_pretrained(tmp_path).unit_scale_embeddings



def test_a_token_table_grown_in_place_is_indexed_to_its_new_rows():
    """`set_input_embeddings` with a larger table and the spec's `vocab_size` raised to match: ids past the old
    vocabulary reach their own rows (they were clamped to the old last row)."""
    model = build_model(modalities=json.loads(json.dumps(MODALITIES)))  # a copy: the spec is changed in place below
    hidden = model.config.hidden_size
    model.config.modalities["text"]["vocab_size"] = 57
    torch.manual_seed(1)
    model.set_input_embeddings(torch.nn.Embedding(57, hidden))
    modalities = dict(MODALITIES, text={"vocab_size": 57, "sampling_rate": None})
    results = []
    for token in (42, 52):
        samples = random_samples()
        for sample in samples:
            if "text" in sample:
                sample["text"] = np.full_like(sample["text"], token)
        with torch.no_grad():
            results.append(model(**batch_of(samples, modalities)).last_hidden_state)
    assert not torch.allclose(*results)

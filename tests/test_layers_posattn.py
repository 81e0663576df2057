"""PosAttnEncoderLayer: in inference the residual sums go into the sublayers' outputs, only where nothing else sees
them; everywhere else (gradients, autocast, hooks) out of place, with the same results."""

import pytest
import torch
from conftest import batch_of, build_model, random_samples
from torch import nn

from modeling_posattn import layers_posattn

ENCODINGS = [
    dict(absolute_position_encoding="sinusoidal", relative_position_encoding="rope"),
    dict(absolute_position_encoding="multiscale", fusion="gated", relative_position_encoding="time_rope"),
    dict(absolute_position_encoding="none", relative_position_encoding="relative_bias"),
]


@pytest.fixture
def residual_sums(monkeypatch):
    """Each `add_residual` call's outcome, True where it summed into the update in place."""
    outcomes = []
    add_residual = layers_posattn.add_residual

    def recorded(residual, update, update_unseen):
        result = add_residual(residual, update, update_unseen)
        outcomes.append(result is update)
        return result

    monkeypatch.setattr(layers_posattn, "add_residual", recorded)
    return outcomes


def out_of_place(monkeypatch):
    monkeypatch.setattr(layers_posattn, "add_residual", lambda residual, update, unseen: residual + update)


def outputs(model, batch, **kwargs):
    output = model(**batch, **kwargs)
    return [tensor.clone() for tensor in (output.last_hidden_state, output.pooler_output)]


@pytest.mark.parametrize("settings", ENCODINGS, ids=lambda settings: "+".join(map(str, settings.values())))
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_inference_sums_the_residual_into_the_sublayer_output(settings, mode, residual_sums, monkeypatch):
    model, batch = build_model(**settings), batch_of(random_samples())
    with mode():
        in_place = outputs(model, batch)
    assert residual_sums == [True] * 2 * model.config.num_hidden_layers
    out_of_place(monkeypatch)
    with mode():
        expected = outputs(model, batch)
    for result, reference in zip(in_place, expected):
        torch.testing.assert_close(result, reference, atol=0, rtol=0)


def test_a_gradient_step_sums_out_of_place(residual_sums):
    model, batch = build_model(), batch_of(random_samples())
    model.train()
    model(**batch).last_hidden_state.sum().backward()
    assert residual_sums and not any(residual_sums)
    assert all(parameter.grad is not None for parameter in model.layers.parameters())


def test_a_frozen_model_with_gradients_on_sums_in_place(residual_sums):
    """Nothing needs a gradient: autograd records nothing, so the sums go in place as under `no_grad`."""
    model = build_model().requires_grad_(False)
    model(**batch_of(random_samples()))
    assert residual_sums == [True] * 2 * model.config.num_hidden_layers


@torch.no_grad()
def test_autocast_sums_in_the_residuals_dtype(residual_sums, monkeypatch):
    """Under bfloat16 autocast the attention and MLP outputs are bfloat16 and the residual float32: summed out of place,
    in float32, as before."""
    model, batch = build_model(), batch_of(random_samples())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = outputs(model, batch)
    assert residual_sums and not any(residual_sums)
    out_of_place(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = outputs(model, batch)
    assert result[0].dtype == torch.float32
    for tensor, reference in zip(result, expected):
        torch.testing.assert_close(tensor, reference, atol=0, rtol=0)


SUBLAYERS = ["mlp", "mlp.fc2", "self_attn", "self_attn.o_proj", "dropout"]


@pytest.mark.parametrize("hooked", [*SUBLAYERS, "every module"])
@torch.no_grad()
def test_a_hook_keeps_the_output_it_saw(hooked):
    """A forward hook on a sublayer (or a global one) keeps what it was given: that output is not summed into."""
    model, batch = build_model(), batch_of(random_samples())
    seen = []

    def hook(module, args, output):
        tensor = output[0] if isinstance(output, tuple) else output
        if isinstance(tensor, torch.Tensor):
            seen.append((tensor, tensor.clone()))

    if hooked == "every module":
        handle = nn.modules.module.register_module_forward_hook(hook)
    else:
        handle = model.layers[0].get_submodule(hooked).register_forward_hook(hook)
    try:
        model(**batch)
    finally:
        handle.remove()
    assert seen
    for tensor, as_seen in seen:
        torch.testing.assert_close(tensor, as_seen, atol=0, rtol=0)


@torch.no_grad()
def test_output_capture_keeps_the_sums_in_place_and_records_the_same(residual_sums, monkeypatch):
    """transformers' output-capture hooks (on every layer and attention module once installed) read the layers' outputs
    and the attention weights: the sums stay in place, and what they record is what the out-of-place model records."""
    model, batch = build_model(attn_implementation="eager"), batch_of(random_samples())
    captured = model(**batch, output_hidden_states=True, output_attentions=True)
    assert residual_sums[-2:] == [True, True]
    out_of_place(monkeypatch)
    expected = model(**batch, output_hidden_states=True, output_attentions=True)
    for name in ("hidden_states", "attentions"):
        assert len(captured[name]) == len(expected[name])
        for tensor, reference in zip(captured[name], expected[name]):
            torch.testing.assert_close(tensor, reference, atol=0, rtol=0)

"""PosAttnEncoderLayer: in inference the residual sums go into the sublayers' outputs, only where nothing else sees
them; everywhere else (gradients, autocast, hooks) out of place, with the same results."""

import contextlib

import pytest
import torch
from conftest import batch_of, build_model, random_samples
from torch import nn

from modeling_posattn import layers_posattn

ENCODINGS = [
    dict(absolute_position_encoding="sinusoidal", relative_position_encoding="rope"),
    dict(absolute_position_encoding="multiscale", position_fusion="gated", relative_position_encoding="time_rope"),
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


@pytest.mark.parametrize("rotary", ["none", "time_rope"])
@torch.no_grad()
def test_autocast_sums_in_the_residuals_dtype(rotary, residual_sums, monkeypatch):
    """Under bfloat16 autocast the attention and MLP outputs are bfloat16 and the residual float32: summed out of place,
    in float32, as before (and bfloat16 q and k are rotated in float32, into new tensors)."""
    model, batch = build_model(relative_position_encoding=rotary), batch_of(random_samples())
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


def keep_output(seen: list, output) -> None:
    """What a hook keeps: its tensor output (a tuple's first), with a copy of what it held then."""
    tensor = output[0] if isinstance(output, tuple) else output
    if isinstance(tensor, torch.Tensor):
        seen.append((tensor, tensor.clone()))


def assert_unchanged(seen: list) -> None:
    """Every kept tensor still holds what its hook saw."""
    assert seen
    for tensor, as_seen in seen:
        torch.testing.assert_close(tensor, as_seen, atol=0, rtol=0)


@pytest.mark.parametrize("hooked", [*SUBLAYERS, "every module"])
@torch.no_grad()
def test_a_hook_keeps_the_output_it_saw(hooked):
    """A forward hook on a sublayer (or a global one) keeps what it was given: that output is not summed into."""
    model, batch = build_model(), batch_of(random_samples())
    seen = []

    def hook(module, args, output):
        keep_output(seen, output)

    if hooked == "every module":
        handle = nn.modules.module.register_module_forward_hook(hook)
    else:
        handle = model.layers[0].get_submodule(hooked).register_forward_hook(hook)
    try:
        model(**batch)
    finally:
        handle.remove()
    assert_unchanged(seen)


@torch.no_grad()
def test_output_capture_records_what_the_out_of_place_model_does(residual_sums, monkeypatch):
    """transformers' output-capture hooks (on every layer and attention module, once a call asked for them) count as
    hooks: the attention's sums go out of place from then on, the MLP's stay in place, and what they record is what the
    out-of-place model records."""
    model, batch = build_model(attn_implementation="eager"), batch_of(random_samples())
    captured = model(**batch, output_hidden_states=True, output_attentions=True)
    assert residual_sums == [False, True] * model.config.num_hidden_layers
    out_of_place(monkeypatch)
    expected = model(**batch, output_hidden_states=True, output_attentions=True)
    for name in ("hidden_states", "attentions"):
        assert len(captured[name]) == len(expected[name])
        for tensor, reference in zip(captured[name], expected[name]):
            torch.testing.assert_close(tensor, reference, atol=0, rtol=0)


@pytest.mark.parametrize("hooked", SUBLAYERS)
@torch.no_grad()
def test_a_hook_that_removes_itself_keeps_the_output_it_saw(hooked):
    """A one-shot hook (it removes itself when it fires) is gone by the time of the sum: still not summed into."""
    model, batch = build_model(), batch_of(random_samples())
    seen = []

    def once(module, args, output):
        keep_output(seen, output)
        handle.remove()

    handle = model.layers[0].get_submodule(hooked).register_forward_hook(once)
    model(**batch)
    assert len(seen) == 1
    assert_unchanged(seen)


@torch.no_grad()
def test_a_recorder_of_the_attention_output_records_it_unchanged(monkeypatch):
    """An `OutputRecorder` of the attention module's own output (index 0, in a subclass) records it, not the sum."""
    from transformers.utils.output_capturing import OutputRecorder

    from modeling_posattn import PosAttnModel
    from modeling_posattn.layers_posattn import PosAttnAttention, PosAttnEncoderLayer

    class RecordingModel(PosAttnModel):
        _can_record_outputs = {
            "hidden_states": PosAttnEncoderLayer,
            "attentions": PosAttnAttention,
            "attention_outputs": OutputRecorder(PosAttnAttention, index=0),
        }

    model, batch = build_model(RecordingModel), batch_of(random_samples())
    recorded = model(**batch, output_attention_outputs=True)["attention_outputs"]
    out_of_place(monkeypatch)
    expected = model(**batch, output_attention_outputs=True)["attention_outputs"]
    for tensor, reference in zip(recorded, expected, strict=True):
        torch.testing.assert_close(tensor, reference, atol=0, rtol=0)


def autocast_without_gradients():
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    return stack


@pytest.mark.parametrize("rotary", ["rope", "time_rope"])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode, autocast_without_gradients])
def test_inference_rotates_q_and_k_where_they_lie(rotary, mode, monkeypatch):
    """q and k come fresh from the projection rows: without gradients they are rotated in place (not in bfloat16:
    there is no complex bfloat16, they are rotated in float32 into new tensors), with the same outputs as the
    rotation into new tensors."""
    rotate_interleaved = layers_posattn.rotate_interleaved
    in_place = []

    def recorded(x, phasors, own=False):
        result = rotate_interleaved(x, phasors, own)
        in_place.append(result is x)
        return result

    model, batch = build_model(relative_position_encoding=rotary), batch_of(random_samples())
    monkeypatch.setattr(layers_posattn, "rotate_interleaved", recorded)
    with mode():
        result = outputs(model, batch)
    assert in_place == [mode is not autocast_without_gradients] * 2 * model.config.num_hidden_layers
    monkeypatch.setattr(layers_posattn, "rotate_interleaved", lambda x, phasors, own=False: rotate_interleaved(x, phasors))
    with mode():
        expected = outputs(model, batch)
    for tensor, reference in zip(result, expected):
        torch.testing.assert_close(tensor, reference, atol=0, rtol=0)


def test_rotation_in_place_only_without_a_gradient_to_record():
    from modeling_posattn.rotary_posattn import rotate_interleaved

    phasors = torch.polar(torch.ones(5, 1, 3), torch.randn(5, 1, 3))
    x = torch.randn(2, 5, 4, 6, requires_grad=True)
    rotated = rotate_interleaved(x, phasors, own=True)
    assert rotated is not x
    with torch.no_grad():
        fresh = x.detach().clone()
        assert rotate_interleaved(fresh, phasors, own=True) is fresh
        torch.testing.assert_close(fresh, rotated.detach(), atol=0, rtol=0)
        other = x.detach().clone()
        assert rotate_interleaved(other, phasors) is not other  # not the caller's own: a new tensor


@pytest.mark.parametrize("hooked", ["self_attn.o_proj", "mlp.fc2"])
@torch.no_grad()
def test_a_hook_installed_during_the_layers_call_keeps_the_output_it_saw(hooked):
    """A hook that another hook installs while the layer runs (here from the first norm's pre-hook) is there at the sum:
    not summed into."""
    model, batch = build_model(), batch_of(random_samples())
    layer, seen = model.layers[0], []

    def keep(module, args, output):
        keep_output(seen, output)

    def install(module, args):
        if not seen and not layer.get_submodule(hooked)._forward_hooks:
            layer.get_submodule(hooked).register_forward_hook(keep)

    layer.layer_norm1.register_forward_pre_hook(install)
    model(**batch)
    assert_unchanged(seen)


class AttentionWrapper(nn.Module):
    """A replacement attention module with its own forward and no `o_proj` of its own."""

    def __init__(self, attention):
        super().__init__()
        self.inner = attention

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_sublayers_replaced_by_other_modules_sum_out_of_place(residual_sums):
    """A sublayer swapped for another module (without `o_proj` / `fc2` of its own) runs, out of place, and computes
    what the original did."""
    model, batch = build_model(), batch_of(random_samples())
    model.eval()
    with torch.no_grad():
        expected = outputs(model, batch)
    for layer in model.layers:
        layer.self_attn = AttentionWrapper(layer.self_attn)
        layer.mlp = nn.Sequential(layer.mlp.fc1, layer.mlp.activation_fn, layer.mlp.fc2)
    residual_sums.clear()
    with torch.no_grad():
        replaced = outputs(model, batch)
    assert residual_sums == [False] * 2 * model.config.num_hidden_layers
    for result, reference in zip(replaced, expected):
        torch.testing.assert_close(result, reference)

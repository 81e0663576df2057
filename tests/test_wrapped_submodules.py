"""Submodules in other modules' clothes. The eager fast paths read a plain module's weights instead of calling it
(`grouped_posattn.plain_module`); any other module in its place (a wrapper with its own forward and none of the
original's attributes, a LoRA-style adapter, a subclass that overrides `forward`) is called. For every submodule a
fast path reads: the model runs with a wrapper, computes what it computed (forward and backward), and what a wrapper
changes reaches the output."""

import copy

import pytest
import torch
from conftest import assert_same_results, batch_of, build_model, outputs_and_gradients, random_samples
from test_stems import STEMMED
from torch import nn

from modeling_posattn import PosAttnForPreTraining, PosAttnModel
from modeling_posattn.positional_encodings import SinusoidalPositionEncoding

RICH = dict(absolute_position_encoding="multiscale", position_fusion="gated", relative_position_encoding="time_rope")


class Scaled(nn.Module):
    """The wrapped module's output times `factor`: its own forward, and none of the wrapped module's attributes."""

    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, *args, **kwargs):
        output = self.inner(*args, **kwargs)
        if isinstance(output, tuple):  # the attention module: (output, weights)
            return (output[0] * self.factor, *output[1:])
        return output * self.factor


# (name, model class, config overrides, submodule path)
CASES = [
    ("gated fusion gate", PosAttnModel, RICH, "embeddings.fusion.gates.0"),
    ("concat fusion map", PosAttnModel, dict(position_fusion="concat"), "embeddings.fusion.projection"),
    ("token table", PosAttnModel, RICH, "embeddings.content.2"),
    ("modality embedding", PosAttnModel, RICH, "embeddings.modality_embedding"),
    ("modality embedding, no unit scale", PosAttnModel, dict(RICH, unit_scale_embeddings=False),
     "embeddings.modality_embedding"),
    ("encoding norm", PosAttnModel, RICH, "embeddings.encoding_norm"),
    ("position encoding", PosAttnModel, {}, "embeddings.position_encoding"),
    ("rotary encoding", PosAttnModel, RICH, "relative_position_encoding"),
    ("layer with a bias encoding", PosAttnModel, dict(relative_position_encoding="relative_bias"), "layers.0"),
    ("attention with a bias encoding", PosAttnModel, dict(relative_position_encoding="alibi"), "layers.0.self_attn"),
    ("conv stem, temporal", PosAttnModel, dict(modalities=STEMMED), "embeddings.content.0.temporal"),
    ("conv stem, spatial", PosAttnModel, dict(modalities=STEMMED), "embeddings.content.0.spatial"),
    ("patch stem", PosAttnModel, dict(modalities=STEMMED), "embeddings.content.1.patch_embedding"),
    ("feature prediction head", PosAttnForPreTraining, RICH, "prediction_heads.0"),
    ("token prediction head", PosAttnForPreTraining, RICH, "prediction_heads.2"),
]


def replaced(model: nn.Module, path: str, factor: float) -> nn.Module:
    model = copy.deepcopy(model)
    parent, _, name = path.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    owner.register_module(name, Scaled(owner.get_submodule(name), factor))
    return model


def batch_for(model: nn.Module) -> dict:
    modalities = model.config.modalities
    lengths = ((40, 10, 5), (18, 4, 0), (80, 20, 9))  # even counts: the stems' stride 2
    batch = batch_of(random_samples(lengths=lengths), modalities)
    if isinstance(model, PosAttnForPreTraining):
        generator = torch.Generator().manual_seed(0)
        batch["mask_positions"] = torch.rand(batch["attention_mask"].shape, generator=generator) < 0.3
    return batch


def result(model: nn.Module, batch: dict) -> torch.Tensor:
    output = model(**batch)
    return output.loss if isinstance(model, PosAttnForPreTraining) else output.last_hidden_state


@pytest.mark.parametrize("name, model_class, overrides, path", CASES, ids=[case[0] for case in CASES])
def test_a_wrapped_submodule_is_called_and_computes_the_same(name, model_class, overrides, path):
    model = build_model(model_class, **overrides)
    batch = batch_for(model)
    with torch.no_grad():
        expected = result(model, batch)
        same = replaced(model, path, 1.0)
        torch.testing.assert_close(result(same, batch), expected)
        assert not torch.allclose(result(replaced(model, path, 2.0), batch), expected), f"{path} was not called"
    assert_same_results(trained(model, batch), trained(same, batch))


def trained(model: nn.Module, batch: dict) -> tuple:
    """A training step's outputs and every parameter's gradient, by parameter name with the wrappers' `inner.`
    left out: a random linear loss of the encoder's outputs (`outputs_and_gradients`), the pretraining loss itself."""
    if isinstance(model, PosAttnForPreTraining):
        model.train()
        loss = model(**batch).loss
        loss.backward()
        output, gradients = loss, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    else:
        output, gradients = outputs_and_gradients(model, batch)
    return output, {name.replace("inner.", ""): gradient for name, gradient in gradients.items()}


class ShiftedSinusoid(SinusoidalPositionEncoding):
    """A subclass whose own `forward` changes the encoding: the registered class's per-row path must not bypass it."""

    def forward(self, *args, **kwargs):
        return super().forward(*args, **kwargs) + 0.5


def test_a_subclassed_position_encoding_runs_its_own_forward():
    model = build_model()
    batch = batch_for(model)
    shifted = copy.deepcopy(model)
    shifted.embeddings.position_encoding.__class__ = ShiftedSinusoid
    with torch.no_grad():
        expected = result(model, batch)
        assert not torch.allclose(result(shifted, batch), expected)


def test_an_encoding_norm_without_a_weight_is_called():
    """A norm without an affine (no `weight` to take the dtype from) in the encoding norm's place; at init the model's
    norm has unit weights, so both compute the same."""
    model = build_model(**RICH)
    batch = batch_for(model)
    plain = copy.deepcopy(model)
    norm = model.embeddings.encoding_norm
    plain.embeddings.encoding_norm = nn.RMSNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)
    with torch.no_grad():
        torch.testing.assert_close(result(plain, batch), result(model, batch))

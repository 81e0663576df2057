"""PEFT's LoRA on PosAttn (dev extra `peft`): with `all-linear` and with the stems' convolutions and the embedding tables
named as targets, the adapted model starts equal to the base model, every adapter reaches the output once it is
non-zero (none is bypassed by a fast path that reads the base weights), a training step reaches only the adapters, and
the adapter saves and loads."""

import copy

import pytest
import torch
from conftest import build_model
from test_stems import STEMMED
from test_wrapped_submodules import RICH, batch_for

from modeling_posattn import PosAttnForSequenceClassification

peft = pytest.importorskip("peft")

TARGETS = {
    "all-linear": (RICH, "all-linear"),
    "all-linear, conv and patch stems": (dict(RICH, modalities=STEMMED), "all-linear"),
    "convolutions and embedding tables": (
        dict(RICH, modalities=STEMMED), ["temporal", "spatial", "patch_embedding", "modality_embedding", "content.2"],
    ),
}


def adapted(model, targets):
    return peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(target_modules=targets, r=4)).eval()


def adapter_modules(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, peft.tuners.lora.LoraLayer)]


def make_adapters_nonzero(model, module_name: str | None = None):
    """LoRA starts with one factor zero (B for Linear and Conv, A for Embedding): both random, in one module or all."""
    for name, parameter in model.named_parameters():
        if "lora_" in name and (module_name is None or name.startswith(module_name + ".")):
            torch.nn.init.normal_(parameter, std=0.5)


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture
def case(request):
    overrides, targets = TARGETS[request.param]
    model = build_model(PosAttnForSequenceClassification, **overrides)
    return model, targets, batch_for(model)


@pytest.mark.parametrize("case", list(TARGETS), indirect=True)
def test_every_adapter_reaches_the_output(case):
    model, targets, batch = case
    expected = logits(model, batch)
    lora = adapted(model, targets)
    names = adapter_modules(lora)
    assert names, "PEFT wrapped nothing"
    torch.testing.assert_close(logits(lora, batch), expected)
    for name in names:
        one = copy.deepcopy(lora)
        make_adapters_nonzero(one, name)
        assert not torch.allclose(logits(one, batch), expected, atol=1e-6), f"the adapter on {name} is bypassed"


@pytest.mark.parametrize("case", ["all-linear", "all-linear, conv and patch stems"], indirect=True)
def test_a_training_step_reaches_only_the_adapters_and_the_adapter_round_trips(case, tmp_path):
    model, targets, batch = case
    lora = adapted(model, targets)
    make_adapters_nonzero(lora)
    lora.train()
    lora(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
    trained = {name for name, parameter in lora.named_parameters() if parameter.grad is not None}
    assert trained and all("lora_" in name for name in trained)
    assert {name for name, parameter in lora.named_parameters() if parameter.requires_grad} == trained
    lora.eval()
    lora.save_pretrained(tmp_path)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(model), tmp_path).eval()
    torch.testing.assert_close(logits(loaded, batch), logits(lora, batch))


@pytest.mark.parametrize("case", list(TARGETS), indirect=True)
def test_merged_adapters_give_the_adapted_models_outputs(case):
    """`merge_and_unload` folds the adapters into plain modules again, which the fast paths read directly: the merged
    model computes what the adapted one did."""
    model, targets, batch = case
    lora = adapted(model, targets)
    make_adapters_nonzero(lora)
    expected = logits(lora, batch)
    merged = lora.merge_and_unload().eval()
    assert not any(isinstance(module, peft.tuners.lora.LoraLayer) for module in merged.modules())
    torch.testing.assert_close(logits(merged, batch), expected, atol=1e-4, rtol=1e-4)

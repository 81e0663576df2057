"""Shared builders for small PosAttn configs and packed batches."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import modeling_posattn  # noqa: E402  (registers the Auto classes)
from modeling_posattn import PosAttnConfig, PosAttnProcessor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("POSATTN_DATA_DIR", ROOT.parent / "shared" / "data"))


def load_script(path: Path):
    """Import a file that is not in a package (scripts/*.py, fixture generators) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Names deliberately not in alphabetical order: the modality order must survive config.json's sorted keys.
MODALITIES = {
    "video": {"input_dim": 6, "sampling_rate": 25.0},
    "audio": {"input_dim": 4, "sampling_rate": 100.0},
    "text": {"vocab_size": 37, "sampling_rate": None},
}

ABSOLUTE = ["none", "sinusoidal", "learned", "dynamic", "conditional", "multiscale"]
RELATIVE = ["none", "rope", "time_rope", "alibi", "relative_bias"]
FUSIONS = ["add", "concat", "gated"]


def tiny_config(**overrides) -> PosAttnConfig:
    settings = dict(
        modalities=MODALITIES,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_dropout=0.0,
        max_position_embeddings=64,
        num_labels=3,
    )
    settings.update(overrides)
    return PosAttnConfig(**settings)


def random_samples(seed: int = 0, lengths=((40, 10, 5), (17, 3, 0), (80, 20, 9))) -> list[dict]:
    """Samples with audio/video/text of the given lengths (0 = modality missing)."""
    rng = np.random.default_rng(seed)
    samples = []
    for audio, video, text in lengths:
        sample = {}
        if audio:
            sample["audio"] = rng.normal(size=(audio, 4)).astype(np.float32)
        if video:
            sample["video"] = rng.normal(size=(video, 6)).astype(np.float32)
        if text:
            sample["text"] = rng.integers(0, 37, size=text)
        samples.append(sample)
    return samples


def batch_of(samples, modalities=MODALITIES) -> dict[str, torch.Tensor]:
    return dict(PosAttnProcessor(modalities=modalities)(samples, return_tensors="pt"))


def build_model(model_class=None, seed: int = 0, **overrides):
    model_class = model_class or modeling_posattn.PosAttnModel
    torch.manual_seed(seed)
    return model_class(tiny_config(**overrides)).eval()


@pytest.fixture
def samples():
    return random_samples()


def denormals_flushed() -> bool:
    """Whether float32 denormals are flushed to zero in this thread (`torch.set_flush_denormal`)."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@pytest.fixture(autouse=True)
def denormals_kept_after_each_test():
    """The toolkit's runs flush denormals for their process; later tests start from torch's default again."""
    yield
    torch.set_flush_denormal(False)


def outputs_and_gradients(model, inputs):
    """A training step's outputs on real tokens and every parameter's gradient, under a random linear loss (its
    gradients are of order one, where a mean of squares makes them 1e-6 and any tolerance passes them)."""
    mask = inputs["attention_mask"].bool()
    model.train()
    hidden = model(**inputs).last_hidden_state
    if hidden.shape[1] == mask.shape[1] + 1:  # `pooling="cls"`: its token comes first
        mask = torch.nn.functional.pad(mask, (1, 0), value=True)
    hidden = hidden[mask]
    (hidden * torch.randn(hidden.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    return hidden, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def assert_same_results(expected_results, results):
    """Outputs to float error; each gradient to float error of its own scale (at initialisation the query and key
    gradients are 1e-4 of the others, so one absolute tolerance would not see them); the key bias's, whose exact value
    is 0 (softmax ignores a score added to every key), to 1e-7 of the largest gradient."""
    (expected_out, expected_grads), (out, grads) = expected_results, results
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=0)
    assert grads.keys() == expected_grads.keys()
    largest = max(gradient.abs().max().item() for gradient in expected_grads.values())
    for parameter, gradient in expected_grads.items():
        floor = 1e-7 * largest if parameter.endswith("k_proj.bias") else 0.0
        tolerance = 1e-5 * gradient.abs().max().item() + floor
        torch.testing.assert_close(grads[parameter], gradient, atol=tolerance, rtol=1e-4, msg=parameter)

"""Stems (linear / conv / patch, strided through the processor) and the content-vs-position scale of the embeddings."""

import numpy as np
import pytest
import torch
from conftest import (
    ABSOLUTE,
    FUSIONS,
    batch_of,
    build_model,
    random_samples,
    tiny_config,
)

from modeling_posattn import (
    PosAttnConfig,
    PosAttnForSequenceClassification,
    PosAttnModel,
    PosAttnProcessor,
)
from modeling_posattn.stems import ConvStem, LinearStem, PatchStem

CONV = {"type": "conv", "kernel_size": 5, "stride": 2, "filters": 4}
STEMMED = {
    "video": {"input_dim": 6, "sampling_rate": 25.0, "stem": CONV},
    "audio": {"input_dim": 4, "sampling_rate": 100.0, "stem": {"type": "patch", "patch_size": [2, 2], "stride": 2}},
    "text": {"vocab_size": 37, "sampling_rate": None},
}


def rms(tensor: torch.Tensor, mask: torch.Tensor) -> float:
    return float(tensor[mask].pow(2).mean().sqrt())


# ---------------------------------------------------------------------------------------------------------------------
# Content vs position scale
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [name for name in ABSOLUTE if name != "none"])
@torch.no_grad()
def test_content_and_every_absolute_encoding_start_at_unit_rms(encoding):
    """At init, the content of every modality and the absolute encoding that meets it both have RMS ~1."""
    model = build_model(absolute_position_encoding=encoding, max_position_embeddings=128)
    batch = batch_of(random_samples())
    positions = model.token_positions(
        batch["input_values"], batch["input_ids"], batch["modality_ids"], None, batch["timestamps"], batch["attention_mask"]
    )
    embeddings = model.embeddings
    content = embeddings.embed_content(batch["input_values"], batch["input_ids"], positions)
    position = embeddings.encoding_norm(embeddings.position_encoding(content, positions))
    for index in range(model.config.num_modalities):
        selected = positions.mask & (positions.modality_ids == index)
        assert rms(content, selected) == pytest.approx(1.0, abs=0.02), f"content of modality {index}"
        assert rms(position, selected) == pytest.approx(1.0, abs=0.05), f"{encoding} on modality {index}"


@torch.no_grad()
def test_without_unit_scale_position_dwarfs_content():
    """The imbalance the option fixes: a std-0.02 Linear on standardised features vs a sinusoid of RMS 0.71."""
    model = build_model(absolute_position_encoding="sinusoidal", unit_scale_embeddings=False)
    assert model.embeddings.encoding_norm is None
    batch = batch_of(random_samples())
    positions = model.token_positions(
        batch["input_values"], batch["input_ids"], batch["modality_ids"], None, batch["timestamps"], batch["attention_mask"]
    )
    content = model.embeddings.embed_content(batch["input_values"], batch["input_ids"], positions)
    encoding = model.embeddings.position_encoding(content, positions)
    audio = positions.mask & (positions.modality_ids == 1)
    assert rms(encoding, audio) == pytest.approx(2**-0.5, abs=0.01)
    assert rms(content, audio) < 0.2


@pytest.mark.parametrize("fusion", FUSIONS)
@torch.no_grad()
def test_every_fusion_and_none_run_with_unit_scale(fusion):
    for absolute in ("none", "sinusoidal"):
        model = build_model(absolute_position_encoding=absolute, position_fusion=fusion)
        output = model(**batch_of(random_samples()))
        assert torch.isfinite(output.last_hidden_state).all()


# ---------------------------------------------------------------------------------------------------------------------
# Processor: strided modalities become tokens at the centres of their frames
# ---------------------------------------------------------------------------------------------------------------------


def test_processor_groups_frames_into_tokens_timed_at_their_centres():
    modalities = {
        "fast": {"input_dim": 2, "sampling_rate": 10.0},
        "slow": {"input_dim": 2, "sampling_rate": 10.0, "stem": {"type": "conv", "stride": 3}},
    }
    frames = np.arange(14, dtype=np.float32).reshape(7, 2)
    row = PosAttnProcessor(modalities=modalities)([{"fast": frames, "slow": frames}], return_tensors="np")
    slow = row["modality_ids"][0] == 1
    # 7 frames at stride 3 -> 3 tokens; the last holds one real frame and two zero frames.
    np.testing.assert_array_equal(row["position_ids"][0][slow], [0, 1, 2])
    np.testing.assert_allclose(row["input_values"][0][slow], [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 0, 0, 0, 0]])
    # Token times: the mean time of its real frames, on the shared clock of the unstrided modality.
    np.testing.assert_allclose(row["timestamps"][0][slow], [0.1, 0.4, 0.6], atol=1e-6)
    np.testing.assert_allclose(row["timestamps"][0][~slow], np.arange(7) / 10, atol=1e-6)
    config = PosAttnConfig(modalities=modalities)
    assert config.max_feature_dim == row["input_values"].shape[-1] == 6
    assert config.sampling_rates == [10.0, 10.0 / 3]


def test_processor_strides_given_timestamps_too():
    modalities = {"imu": {"input_dim": 1, "sampling_rate": 50.0, "stem": {"type": "linear", "stride": 2}}}
    times = [0.0, 0.1, 0.5, 0.7]
    row = PosAttnProcessor(modalities=modalities)([{"imu": np.ones((4, 1)), "timestamps": {"imu": times}}], return_tensors="np")
    np.testing.assert_allclose(row["timestamps"][0], [0.05, 0.6], atol=1e-6)


def test_stride_longer_than_the_sample_is_refused():
    modalities = {"imu": {"input_dim": 1, "sampling_rate": 50.0, "stem": {"type": "conv", "stride": 4}}}
    with pytest.raises(ValueError, match=r"Sample 1, modality 'imu': 3 frame\(s\), fewer than the stem's stride 4"):
        PosAttnProcessor(modalities=modalities)([{"imu": np.ones((8, 1))}, {"imu": np.ones((3, 1))}])


@pytest.mark.parametrize(
    "stem, message",
    [
        ({"type": "lstm"}, "`type` one of"),
        ({"type": "conv", "stride": 0}, "`stride` must be a positive int"),
        ({"type": "conv", "kernel": 3}, r"unknown option\(s\) \['kernel'\]"),
        ({"type": "patch"}, "`patch_size` must be"),
        ({"type": "patch", "patch_size": [1, 5]}, "`patch_size` must be"),
        ("conv", "must be a dict"),
    ],
)
def test_bad_stem_specs_are_refused_naming_the_modality(stem, message):
    with pytest.raises(ValueError, match=f"Modality 'imu': `stem`.*{message}"):
        PosAttnConfig(modalities={"imu": {"input_dim": 6, "sampling_rate": 50.0, "stem": stem}})


def test_stem_on_a_token_modality_is_refused():
    with pytest.raises(ValueError, match="Modality 'text': `stem` applies to feature modalities"):
        PosAttnConfig(modalities={"text": {"vocab_size": 9, "stem": {"type": "conv"}}})


# ---------------------------------------------------------------------------------------------------------------------
# Model: stems see only their own modality's real frames
# ---------------------------------------------------------------------------------------------------------------------


def stemmed_model(**overrides):
    torch.manual_seed(0)
    return PosAttnModel(tiny_config(modalities=STEMMED, **overrides)).eval()


def test_stems_are_built_from_the_spec():
    model = stemmed_model()
    video, audio, text = model.embeddings.content
    assert isinstance(video, ConvStem) and video.stride == 2 and video.in_features == 12
    assert isinstance(audio, PatchStem) and audio.in_features == 8
    assert isinstance(text, torch.nn.Embedding)
    assert isinstance(build_model().embeddings.content[0], LinearStem)


@torch.no_grad()
def test_conv_stem_output_ignores_padding_and_other_modalities():
    """Changing padding frames or another modality's values does not change a modality's stem output, and a sample's
    stem output in a padded batch equals its output alone: neighbours act as zero padding."""
    model = stemmed_model()
    samples = random_samples(lengths=((12, 9, 4), (30, 4, 0)))
    batch = batch_of(samples, STEMMED)
    stem, mask = model.embeddings.content[0], batch["modality_ids"].eq(0) & batch["attention_mask"].bool()
    reference = stem(batch["input_values"], mask)

    noisy = batch["input_values"].clone()
    noisy[~mask] = torch.randn_like(noisy[~mask]) * 100  # other modalities and padding
    torch.testing.assert_close(stem(noisy, mask), reference)

    alone = batch_of([samples[1]], STEMMED)
    alone_mask = alone["modality_ids"].eq(0) & alone["attention_mask"].bool()
    torch.testing.assert_close(stem(alone["input_values"], alone_mask)[alone_mask], reference[1][mask[1]], atol=1e-5, rtol=1e-5)
    assert reference[~mask].abs().max() == 0


@torch.no_grad()
def test_conv_stem_matches_a_plain_convolution_of_the_modality():
    """The packed computation equals ConvTran's temporal-then-spatial convolution run on the modality's frames alone."""
    model = stemmed_model()
    stem = model.embeddings.content[0]
    frames = torch.randn(9, 6)  # 9 frames -> 5 tokens at stride 2 (last zero-filled)
    batch = batch_of([{"video": frames.numpy()}], STEMMED)
    mask = batch["attention_mask"].bool() & batch["modality_ids"].eq(0)
    padded = torch.cat((frames, torch.zeros(1, 6)))  # zero-filled last group
    hidden = stem.temporal(padded.T.reshape(6, 1, -1)).reshape(1, 6 * stem.filters, -1)  # (1, channels, frames)
    hidden = stem.activation(stem.temporal_norm(hidden.transpose(1, 2)).transpose(1, 2))  # normalised per frame
    expected = stem.activation(stem.spatial_norm(stem.spatial(hidden).transpose(1, 2)))[0]
    normalization = PosAttnProcessor(modalities=STEMMED)  # unfitted: no normalisation, values as given
    assert not normalization.normalization
    torch.testing.assert_close(stem(batch["input_values"], mask)[0], expected, atol=1e-5, rtol=1e-5)


def test_stemmed_model_trains_and_time_aligned_encodings_see_token_centres():
    torch.manual_seed(0)
    config = tiny_config(modalities=STEMMED, absolute_position_encoding="multiscale", relative_position_encoding="time_rope")
    model = PosAttnForSequenceClassification(config)
    batch = batch_of(random_samples(), STEMMED)
    video = batch["modality_ids"][0] == 0
    np.testing.assert_allclose(batch["timestamps"][0][video][:3].numpy(), [0.02, 0.10, 0.18], atol=1e-6)  # 25 Hz, pairs
    loss = model(**batch, labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    for name in ("temporal.weight", "spatial.weight"):
        assert model.posattn.embeddings.content[0].get_parameter(name).grad.abs().sum() > 0
    assert model.posattn.embeddings.content[1].projection.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("frame", [0, 1])
def test_non_finite_value_in_any_frame_of_a_strided_token_is_refused(frame):
    """A strided token packs `stride` frames: the value check covers all of them, not only the first frame's columns."""
    model = build_model(modalities=STEMMED)
    batch = batch_of(random_samples(), STEMMED)
    audio = model.config.modality_names.index("audio")
    sample, token = (batch["modality_ids"] == audio).nonzero()[0].tolist()
    batch["input_values"][sample, token, frame * 4 + 1] = float("nan")  # audio: 4 features per frame, stride 2
    with pytest.raises(ValueError, match=f"Modality 'audio'.*NaN or Inf at sample {sample}, token {token}"):
        model(**batch)


def assert_same_stem_results(stem, values, mask, cotangent, reference, candidate):
    """`candidate(stem, values, mask)` gives `reference`'s output (zero at every other token) and gradients: the
    features' and every parameter's, each to float error of its own scale."""
    results = []
    for formula in (reference, candidate):
        output = formula(stem, values, mask)
        results.append((output, torch.autograd.grad(output, [values, *stem.parameters()], cotangent)))
    (expected, expected_grads), (output, grads) = results
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    assert (output[~mask] == 0).all()
    for name, gradient, expected_gradient in zip(["input_values", *dict(stem.named_parameters())], grads, expected_grads):
        tolerance = 1e-5 * expected_gradient.abs().max().item()
        torch.testing.assert_close(gradient, expected_gradient, atol=tolerance, rtol=1e-4, msg=name)


def conv_stem_by_transposed_convolutions(stem: ConvStem, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The conv stem as it was computed before its channels-last layout: both `Conv1d`s on `(B, channels, frames)`,
    each LayerNorm between two transposes, and non-own frames zeroed before the spatial convolution too."""
    batch, length = mask.shape
    token_mask = mask.unsqueeze(-1).to(values.dtype)
    frames = torch.where(mask.unsqueeze(-1), values[..., : stem.in_features], 0.0)
    frames = frames.reshape(batch, length * stem.stride, stem.input_dim)
    frame_mask = token_mask.repeat_interleave(stem.stride, dim=1).transpose(1, 2)
    hidden = stem.temporal(frames.transpose(1, 2).reshape(batch * stem.input_dim, 1, -1))
    hidden = hidden.reshape(batch, stem.input_dim * stem.filters, -1)
    hidden = stem.activation(stem.temporal_norm(hidden.transpose(1, 2)).transpose(1, 2)) * frame_mask
    hidden = stem.spatial(hidden).transpose(1, 2)
    return stem.activation(stem.spatial_norm(hidden)) * token_mask


@pytest.mark.parametrize("kernel_size, stride, input_dim, filters", [(5, 2, 5, 8), (8, 1, 5, 8), (8, 3, 1, 3), (3, 1, 40, 2)])
def test_conv_stem_in_frame_order_matches_the_transposed_convolutions(kernel_size, stride, input_dim, filters):
    """Same outputs and gradients (every parameter's and the features') as the two convolutions on transposed frames,
    on a packed batch with padding and another modality's tokens."""
    torch.manual_seed(0)
    spec = {"type": "conv", "kernel_size": kernel_size, "stride": stride, "filters": filters}
    stem = ConvStem({"input_dim": input_dim, "stem": spec}, 16)
    values = torch.randn(3, 11, input_dim * stride + 2, requires_grad=True)
    mask = torch.rand(3, 11) < 0.7
    mask[:, -2:] = False  # padding
    cotangent = torch.randn(3, 11, 16)
    assert_same_stem_results(stem, values, mask, cotangent, conv_stem_by_transposed_convolutions, ConvStem.forward)


def test_conv_stem_under_autocast_returns_the_features_dtype():
    """Under autocast the stem's GEMMs run in bfloat16 but its output keeps the features' float32, as the convolutions'
    output times a float mask did."""
    stem = ConvStem({"input_dim": 4, "stem": {"type": "conv", "kernel_size": 3}}, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert stem(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)).dtype == torch.float32


def patch_stem_by_convolution(stem: PatchStem, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The patch stem as ViT writes it: each token's frames as a one-channel image through the `Conv2d`."""
    batch, length = mask.shape
    images = torch.where(mask.unsqueeze(-1), values[..., : stem.in_features], 0.0)
    images = images.reshape(batch * length, 1, stem.stride, stem.input_dim)
    patches = stem.patch_embedding(images).flatten(2).transpose(1, 2)  # (B*L, P, F)
    patches = stem.activation(stem.patch_norm(patches)).reshape(batch, length, -1)
    return torch.where(mask.unsqueeze(-1), stem.projection(patches), 0.0)


@pytest.mark.parametrize("stride, patch_size", [(2, [2, 2]), (4, [2, 3]), (3, [1, 6]), (4, [4, 1])])
def test_patch_stem_matches_the_patch_convolution(stride, patch_size):
    """Same outputs and every parameter's gradient as the `Conv2d` over each token's image, patches in row-major
    order, on a packed batch with padding and another modality's tokens."""
    torch.manual_seed(0)
    stem = PatchStem({"input_dim": 6, "stem": {"type": "patch", "patch_size": patch_size, "stride": stride}}, 16)
    values = torch.randn(3, 7, 6 * stride + 3, requires_grad=True)
    mask = torch.rand(3, 7) < 0.7
    cotangent = torch.randn(3, 7, 16)
    assert_same_stem_results(stem, values, mask, cotangent, patch_stem_by_convolution, PatchStem.forward)


@pytest.mark.parametrize("kernel_size, stride", [(8, 2), (3, 1), (7, 3), (1, 1)])
@pytest.mark.parametrize("layout", ["interleaved", "blocks"])
def test_conv_stem_over_its_own_tokens_equals_the_packed_batch(kernel_size, stride, layout):
    """Embedding only the modality's own tokens, gathered across samples, gives the packed computation's outputs and
    gradients (every parameter's and the features'): windows stop at other modalities' tokens, padding and sample
    boundaries, also where one sample's last own token and the next one's first are adjacent in the batch."""
    torch.manual_seed(0)
    stem = ConvStem({"input_dim": 3, "stem": {"type": "conv", "kernel_size": kernel_size, "stride": stride, "filters": 4}}, 8)
    values = torch.randn(4, 9, 3 * stride + 1, requires_grad=True)
    if layout == "interleaved":
        mask = torch.rand(4, 9) < 0.6
    else:  # a block of own tokens per sample, then other tokens, then padding
        mask = torch.zeros(4, 9, dtype=torch.bool)
        for sample, (start, end) in enumerate([(0, 9), (0, 5), (2, 6), (0, 1)]):
            mask[sample, start:end] = True
    mask[0, -1] = mask[1, 0] = True  # adjacent across the boundary of samples 0 and 1
    cotangent = torch.randn(4, 9, 8)
    own_tokens = int(mask.sum())
    assert_same_stem_results(stem, values, mask, cotangent, ConvStem.forward,
                             lambda stem, values, mask: stem(values, mask, own_tokens=own_tokens))


def test_the_model_embeds_each_conv_modality_over_its_own_tokens(monkeypatch):
    """After the value checks' sync the model hands each conv stem its token count (the batch's real tokens of that
    modality), so only those are embedded; the outputs are the packed computation's."""
    counts = []
    original = ConvStem.embed_own_tokens
    monkeypatch.setattr(ConvStem, "embed_own_tokens", lambda self, v, m, n: counts.append(n) or original(self, v, m, n))
    model = stemmed_model()
    batch = batch_of(random_samples(), STEMMED)
    output = model(**batch).last_hidden_state
    video = batch["attention_mask"].bool() & batch["modality_ids"].eq(0)
    assert counts == [int(video.sum())]
    monkeypatch.setattr(ConvStem, "embed_own_tokens", lambda self, v, m, n: ConvStem.forward(self, v, m))
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(output[mask], model(**batch).last_hidden_state[mask], atol=1e-5, rtol=1e-5)


TWO_CONV = {
    "text": {"vocab_size": 37, "sampling_rate": None},
    "audio": {"input_dim": 4, "sampling_rate": 100.0, "stem": {"type": "conv", "kernel_size": 5, "filters": 4}},
    "video": {"input_dim": 6, "sampling_rate": 25.0, "stem": {"type": "conv", "kernel_size": 4, "stride": 2, "filters": 3}},
}


@pytest.mark.parametrize("lengths", [((40, 10, 5), (17, 3, 0), (80, 20, 9)), ((0, 10, 5), (0, 3, 2))], ids=["both", "no audio"])
def test_each_conv_stem_gets_its_own_modalitys_count(lengths, monkeypatch):
    """Two conv modalities, neither first, with different token counts (or one absent from the batch): each stem is
    handed its own count, and the model's outputs and gradients are the packed computation's."""
    counts = []
    original = ConvStem.embed_own_tokens
    monkeypatch.setattr(ConvStem, "embed_own_tokens", lambda self, v, m, n: counts.append((self.input_dim, n)) or original(self, v, m, n))
    batch = batch_of(random_samples(lengths=lengths), TWO_CONV)
    mask = batch["attention_mask"].bool()
    own = {dim: int((mask & batch["modality_ids"].eq(index)).sum()) for index, dim in ((1, 4), (2, 6))}
    results = []
    for packed in (False, True):
        if packed:
            monkeypatch.setattr(ConvStem, "embed_own_tokens", lambda self, v, m, n: ConvStem.forward(self, v, m))
        torch.manual_seed(0)
        model = PosAttnModel(tiny_config(modalities=TWO_CONV)).train()
        hidden = model(**batch).last_hidden_state[mask]
        hidden.sum().backward()
        results.append((hidden, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}))
    assert counts == [(dim, count) for dim, count in own.items() if count]
    (own_path, own_grads), (packed_path, packed_grads) = results
    torch.testing.assert_close(own_path, packed_path, atol=1e-5, rtol=1e-5)
    for name, gradient in packed_grads.items():
        torch.testing.assert_close(own_grads[name], gradient, atol=1e-5 * gradient.abs().max().item() + 1e-8, rtol=1e-4, msg=name)


def test_jit_trace_of_a_conv_stem_model_bakes_in_no_token_count():
    """`torch.jit.trace` skips the value checks' sync (as torch.compile and torch.export do): the trace takes the packed
    computation and is right on a batch with other counts."""
    model = stemmed_model(torchscript=True)
    batch = batch_of(random_samples(), STEMMED)
    keys = ["input_values", "input_ids", "modality_ids", "position_ids", "timestamps", "attention_mask"]
    with torch.no_grad():
        traced = torch.jit.trace(model, tuple(batch[key] for key in keys), check_trace=False, strict=False)
        other = batch_of(random_samples(seed=1, lengths=((5, 8, 4), (12, 2, 0))), STEMMED)
        output = traced(*(other[key] for key in keys))
        output = output["last_hidden_state"] if isinstance(output, dict) else output[0]
        mask = other["attention_mask"].bool()
        torch.testing.assert_close(output[mask], model(**other)[0][mask], atol=1e-5, rtol=1e-5)

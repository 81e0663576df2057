"""The positional-encoding family: each encoding does what its docstring says, and nothing leaks or breaks."""

import math

import numpy as np
import pytest
import torch
from conftest import ABSOLUTE, FUSIONS, MODALITIES, RELATIVE, batch_of, build_model, random_samples, tiny_config

from modeling_posattn import PosAttnModel
from modeling_posattn.positional_encodings import (
    ConditionalPositionEncoding,
    DynamicPositionEncoding,
    MultiScalePositionEncoding,
    TokenPositions,
    dense_attention_bias,
)
from modeling_posattn.rotary_posattn import apply_rotary_pos_emb

# one absolute encoding at a time (with `add`), one relative at a time (no absolute), and the fusions
ENCODINGS = (
    [dict(absolute_position_encoding=name) for name in ABSOLUTE if name != "none"]
    + [dict(absolute_position_encoding="none", relative_position_encoding=name) for name in RELATIVE if name != "none"]
    + [dict(absolute_position_encoding=name, position_fusion=fusion) for name in ("sinusoidal", "multiscale") for fusion in ("concat", "gated")]
)
IDS = ["-".join(str(value) for value in encoding.values()) for encoding in ENCODINGS]


def single_modality_positions(length: int, rate: float, modality: int = 0) -> TokenPositions:
    position_ids = torch.arange(length).unsqueeze(0)
    return TokenPositions(
        position_ids=position_ids,
        timestamps=position_ids / rate,
        modality_ids=torch.full((1, length), modality),
        mask=torch.ones(1, length, dtype=torch.bool),
        modality_lengths=torch.full((1, length), length),
    )


@pytest.mark.parametrize("encoding", ENCODINGS, ids=IDS)
@torch.no_grad()
def test_position_matters(encoding):
    """Permuting one modality's tokens changes the output, for every encoding except `none`."""
    sample = random_samples(lengths=((30, 8, 5),))[0]
    permuted = dict(sample, audio=sample["audio"][np.random.default_rng(3).permutation(30)])
    # At the default init (std 0.02) q.k is ~0, attention is nearly uniform and a rotary encoding moves the unit-scale
    # embeddings by ~1e-5; a wider init makes this a test of the encoding rather than of the init.
    model = build_model(**encoding, initializer_range=0.2)
    original, shuffled = model(**batch_of([sample])), model(**batch_of([permuted]))
    assert not torch.allclose(original.pooler_output, shuffled.pooler_output, atol=1e-4)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=IDS)
@torch.no_grad()
def test_padding_invariance_and_eager_sdpa_equivalence(encoding):
    samples = random_samples(lengths=((12, 3, 4), (60, 15, 9), (5, 0, 2)))
    eager = build_model(attn_implementation="eager", **encoding)
    sdpa = build_model(attn_implementation="sdpa", **encoding)
    alone = eager(**batch_of(samples[:1])).last_hidden_state[0]
    batched_eager = eager(**batch_of(samples)).last_hidden_state
    batched_sdpa = sdpa(**batch_of(samples)).last_hidden_state
    torch.testing.assert_close(batched_eager[0, : len(alone)], alone, atol=1e-5, rtol=0)
    mask = batch_of(samples)["attention_mask"].bool()
    torch.testing.assert_close(batched_sdpa[mask], batched_eager[mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
@torch.no_grad()
def test_flex_attention_matches_eager_for_bias_encodings(name):
    """FlexAttention computes the bias inside the kernel (`score_mod`) and matches the dense eager path."""
    inputs = batch_of(random_samples(lengths=((20, 5, 3), (9, 2, 0))))
    eager = build_model(relative_position_encoding=name, attn_implementation="eager", num_hidden_layers=1)
    flex = build_model(relative_position_encoding=name, attn_implementation="flex_attention", num_hidden_layers=1)
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(flex(**inputs).last_hidden_state[mask], eager(**inputs).last_hidden_state[mask], atol=1e-5, rtol=0)


@torch.no_grad()
def test_kernel_friendly_encodings_pass_no_square_mask_to_sdpa(monkeypatch):
    """With padding, sdpa gets a (B, 1, 1, L) key mask, never an L x L tensor, for every kernel-friendly encoding."""
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        seen.append(None if attn_mask is None else tuple(attn_mask.shape))
        return original(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    inputs = batch_of(random_samples())
    length = inputs["attention_mask"].shape[1]
    for absolute in ABSOLUTE:
        for relative in ("none", "rope", "time_rope"):
            seen.clear()
            build_model(absolute_position_encoding=absolute, relative_position_encoding=relative, attn_implementation="sdpa",
                        max_position_embeddings=128)(**inputs)
            assert seen and all(shape == (3, 1, 1, length) for shape in seen), (absolute, relative, seen)


@pytest.mark.parametrize("name", ["rope", "time_rope", "alibi", "relative_bias"])
@torch.no_grad()
def test_translation_invariance(name):
    """Shifting every timestamp (or index, for rope) by a constant leaves the outputs unchanged."""
    # 100 time units per second: distances between 100 Hz / 25 Hz frames are whole units, far from rounding edges.
    model = build_model(absolute_position_encoding="none", relative_position_encoding=name, time_units_per_second=100.0)
    inputs = batch_of(random_samples())
    shifted = dict(inputs)
    if name == "rope":
        shifted["position_ids"] = inputs["position_ids"] + 5
    else:
        shifted["timestamps"] = inputs["timestamps"] + 2.0
    mask = inputs["attention_mask"].bool()
    torch.testing.assert_close(model(**shifted).last_hidden_state[mask], model(**inputs).last_hidden_state[mask], atol=1e-5, rtol=0)


def pair_score(model: PosAttnModel, positions: TokenPositions, query_index: int, key_index: int, query_vec, key_vec):
    """Pre-softmax score (per head) between two tokens carrying fixed query/key vectors."""
    encoding = model.relative_position_encoding
    heads, head_dim, length = model.config.num_attention_heads, model.config.head_dim, positions.mask.shape[1]
    query = torch.zeros(1, heads, length, head_dim)
    key = torch.zeros(1, heads, length, head_dim)
    query[0, :, query_index], key[0, :, key_index] = query_vec, key_vec
    if encoding.kind == "rotary":
        cos, sin = encoding(torch.zeros(1, length, model.config.hidden_size), positions)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        return (query[0, :, query_index] * key[0, :, key_index]).sum(-1)
    bias = dense_attention_bias(encoding, positions, torch.float32)[0, :, query_index, key_index]
    return (query_vec * key_vec).sum(-1) + bias


@pytest.mark.parametrize("name, aligned", [("time_rope", True), ("alibi", True), ("relative_bias", True), ("rope", False)])
@torch.no_grad()
def test_time_alignment_one_signal_at_one_and_two_times_the_rate(name, aligned):
    """The score between two tokens depends only on their time difference, not on indices or rates. One signal at
    25 Hz (1x) and 50 Hz (2x): frames 2 and 6 at 1x are frames 4 and 12 at 2x (0.08 s and 0.24 s). Index-based RoPE
    is the control: it sees different index distances and scores them differently."""
    modalities = {"slow": {"input_dim": 4, "sampling_rate": 25.0}, "fast": {"input_dim": 4, "sampling_rate": 50.0}}
    model = build_model(modalities=modalities, absolute_position_encoding="none", relative_position_encoding=name, time_units_per_second=50.0)
    torch.nn.init.normal_(model.relative_position_encoding.relative_attention_bias.weight) if name == "relative_bias" else None
    generator = torch.Generator().manual_seed(0)
    query_vec = torch.randn(model.config.num_attention_heads, model.config.head_dim, generator=generator)
    key_vec = torch.randn(model.config.num_attention_heads, model.config.head_dim, generator=generator)
    at_1x = pair_score(model, single_modality_positions(10, 25.0, modality=0), 2, 6, query_vec, key_vec)
    at_2x = pair_score(model, single_modality_positions(20, 50.0, modality=1), 4, 12, query_vec, key_vec)
    assert torch.allclose(at_1x, at_2x, atol=1e-5) == aligned


def test_multiscale_same_time_same_encoding_up_to_gain():
    config = tiny_config()
    encoding = MultiScalePositionEncoding(config)
    torch.nn.init.uniform_(encoding.gain, 0.2, 3.0)
    audio, video = config.modality_names.index("audio"), config.modality_names.index("video")
    # audio frame 40 at 100 Hz and video frame 10 at 25 Hz are both at 0.4 s; the third token is at 0.44 s
    positions = TokenPositions(
        position_ids=torch.tensor([[40, 10, 11]]),
        timestamps=torch.tensor([[0.4, 0.4, 0.44]]),
        modality_ids=torch.tensor([[audio, video, video]]),
        mask=torch.ones(1, 3, dtype=torch.bool),
        modality_lengths=torch.tensor([[80, 20, 20]]),
    )
    with torch.no_grad():
        p = encoding(torch.zeros(1, 3, config.hidden_size), positions)[0]
    gain = torch.cat((encoding.gain, encoding.gain), dim=-1).detach()
    torch.testing.assert_close(p[0] / gain[audio], p[1] / gain[video], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(p[1], p[2], atol=1e-3)
    # the bands span two frames of the fastest modality up to the longest sequence of the slowest
    periods = 2 * math.pi / encoding.angular_frequencies
    assert math.isclose(periods.min().item(), 2 / 100.0, rel_tol=1e-5)
    assert math.isclose(periods.max().item(), config.max_position_embeddings / 25.0, rel_tol=1e-4)


def test_dynamic_formula_and_any_length():
    """tAPE: p(i, L) = [sin(i w_k d / L), cos(i w_k d / L)]: the same index differs across lengths; lengths 1..100 000."""
    config = tiny_config()
    encoding = DynamicPositionEncoding(config)
    d = config.hidden_size
    for length in (1, 2, 7, 1000, 100_000):
        p = encoding(torch.zeros(1, length, d), single_modality_positions(length, 100.0))
        assert p.shape == (1, length, d) and torch.isfinite(p).all()
    p10 = encoding(torch.zeros(1, 10, d), single_modality_positions(10, 100.0))[0]
    p20 = encoding(torch.zeros(1, 20, d), single_modality_positions(20, 100.0))[0]
    omega = 10000 ** (-torch.arange(0, d, 2).float() / d)
    expected = torch.cat((torch.sin(3 * omega * d / 10), torch.cos(3 * omega * d / 10)))
    torch.testing.assert_close(p10[3], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(p10[3], p20[3], atol=1e-3)


def test_conditional_sees_only_its_own_modality():
    """Neither padding nor a neighbouring modality leaks through the convolution."""
    config = tiny_config(conditional_kernel_size=5)
    encoding = ConditionalPositionEncoding(config)
    torch.nn.init.normal_(encoding.weight)
    positions = TokenPositions(
        position_ids=torch.tensor([[0, 1, 2, 0, 1, 0, 0]]),
        timestamps=torch.zeros(1, 7),
        modality_ids=torch.tensor([[0, 0, 0, 1, 1, 0, 0]]),
        mask=torch.tensor([[True] * 5 + [False] * 2]),
        modality_lengths=torch.tensor([[3, 3, 3, 2, 2, 0, 0]]),
    )
    content = torch.randn(1, 7, config.hidden_size)
    base = encoding(content, positions)
    other = content.clone()
    other[0, 3:] = torch.randn(4, config.hidden_size)  # the other modality and the padding change
    torch.testing.assert_close(encoding(other, positions)[0, :3], base[0, :3])
    changed = content.clone()
    changed[0, 1] += 1.0
    assert not torch.allclose(encoding(changed, positions)[0, 0], base[0, 0])


@pytest.mark.parametrize("encoding", ENCODINGS, ids=IDS)
@torch.no_grad()
def test_extrapolation_to_eight_times_the_configured_length(encoding):
    """A model configured for length L runs at 8L with no error and no NaN; `learned` raises its clear error."""
    model = build_model(max_position_embeddings=16, **encoding)
    inputs = batch_of(random_samples(lengths=((128, 128, 16),)))
    if encoding.get("absolute_position_encoding") == "learned":
        with pytest.raises(ValueError, match="Modality 'video': 128 tokens exceed the `learned` position table"):
            model(**inputs)
        return
    assert torch.isfinite(model(**inputs).last_hidden_state).all()


@pytest.mark.parametrize(
    "rope_parameters",
    [
        {"rope_type": "linear", "factor": 8.0, "rope_theta": 10000.0},
        {"rope_type": "dynamic", "factor": 8.0, "rope_theta": 10000.0},
        {"rope_type": "yarn", "factor": 8.0, "rope_theta": 10000.0},
    ],
    ids=lambda parameters: parameters["rope_type"],
)
@torch.no_grad()
def test_rope_scaling_from_transformers(rope_parameters):
    """RoPE length scaling is transformers' own: the frequencies differ from the default's, and 8L runs cleanly."""
    model = build_model(absolute_position_encoding="none", relative_position_encoding="rope", max_position_embeddings=16,
                        rope_parameters=rope_parameters)
    default = build_model(absolute_position_encoding="none", relative_position_encoding="rope", max_position_embeddings=16)
    inputs = batch_of(random_samples(lengths=((128, 8, 4),)))
    assert torch.isfinite(model(**inputs).last_hidden_state).all()
    if rope_parameters["rope_type"] != "dynamic":  # dynamic rescales at run time, from the actual length
        assert not torch.allclose(model.relative_position_encoding.inv_freq, default.relative_position_encoding.inv_freq)
    else:
        assert not torch.allclose(model.relative_position_encoding.inv_freq, model.relative_position_encoding.original_inv_freq)
        short = batch_of(random_samples(lengths=((8, 2, 0),)))
        model(**short)  # back under the training length: the original frequencies return (no stale cache)
        torch.testing.assert_close(model.relative_position_encoding.inv_freq, model.relative_position_encoding.original_inv_freq)


def test_flex_training_on_cpu_gets_a_clear_error():
    model = build_model(relative_position_encoding="alibi", attn_implementation="flex_attention", num_hidden_layers=1)
    model.train()
    with pytest.raises(ValueError, match="no FlexAttention backward on CPU"):
        model(**batch_of(random_samples(lengths=((5, 2, 0),))))


@pytest.mark.parametrize("absolute", [name for name in ABSOLUTE if name != "none"])
def test_the_encoding_norm_runs_in_its_own_dtype_under_autocast(absolute):
    """Under bfloat16 autocast an encoding comes in bfloat16 while the RMSNorm weight stays float32: the norm gets its
    input in float32 (torch's fused kernel refuses mixed dtypes, warns and takes a slower path) and the model's output
    is what the float32 model gives, to bfloat16's precision."""
    # one feature modality: with more, the per-modality affine (float32 tables) turns the content to float32
    features = {"audio": MODALITIES["audio"]}
    model = build_model(absolute_position_encoding=absolute, max_position_embeddings=128, modalities=features)
    norm = model.embeddings.encoding_norm
    seen = []
    norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    inputs = batch_of(random_samples(lengths=((40, 0, 0), (17, 0, 0))), modalities=features)
    expected = model(**inputs).last_hidden_state
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model(**inputs).last_hidden_state
    assert seen == [torch.float32, torch.float32]
    torch.testing.assert_close(hidden.float(), expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("absolute", ["sinusoidal", "multiscale"])
def test_every_fusion_keeps_the_residual_stream_in_float32_under_autocast(fusion, absolute):
    """Under bfloat16 autocast the fusion's output is the residual stream every layer adds to: float32 for every
    fusion (concat's map came out in bfloat16, and so did every residual sum and the model's output)."""
    model = build_model(absolute_position_encoding=absolute, position_fusion=fusion)
    inputs = batch_of(random_samples())
    fused = []
    model.embeddings.fusion.register_forward_hook(lambda module, args, output: fused.append(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model(**inputs).last_hidden_state
    assert fused == [torch.float32] and hidden.dtype == torch.float32


@pytest.mark.parametrize("fusion, bands, unit_scale", [("gated", None, True), ("add", 8, True), ("gated", 8, False)])
def test_multiscale_is_computed_once_per_distinct_modality_and_time(fusion, bands, unit_scale, monkeypatch):
    """In eager CPU execution `multiscale` encodes each distinct (modality, time) of the batch once (and the embeddings
    RMS-normalise that table), then gathers it per token: outputs and gradients equal the per-token computation, with
    and without the projection (`2 * bands != hidden`), ragged samples of three modalities."""
    from conftest import assert_same_results, outputs_and_gradients

    model = build_model(absolute_position_encoding="multiscale", position_fusion=fusion, multiscale_num_bands=bands,
                        unit_scale_embeddings=unit_scale)
    encoding = model.embeddings.position_encoding
    inputs = batch_of(random_samples())  # 3 samples, up to 109 tokens; the same clocks, so times repeat across them
    encoded, encode = [], MultiScalePositionEncoding.encode
    monkeypatch.setattr(MultiScalePositionEncoding, "encode",
                        lambda self, times, *args: encoded.append(times.shape) or encode(self, times, *args))
    per_row = outputs_and_gradients(model, inputs)
    mask = inputs["attention_mask"].bool()
    positions = model.token_positions(inputs["input_values"], inputs["input_ids"], inputs["modality_ids"],
                                      inputs["position_ids"], inputs["timestamps"], inputs["attention_mask"])
    pairs = {(int(m), float(t)) for m, t in zip(positions.modality_ids.flatten(), positions.timestamps.flatten())}
    assert encoded == [(len(pairs),)] and len(pairs) < mask.numel()
    model.zero_grad()
    monkeypatch.setattr(type(encoding), "rows", lambda self, content, positions: None)
    assert_same_results(outputs_and_gradients(model, inputs), per_row)


def test_multiscale_rows_tell_apart_the_last_bit_of_a_time_and_the_modality():
    """The rows' key is exact: times one float32 step apart, and one time in two modalities (whose gains differ), get
    rows of their own; `table[index]` is the per-token encoding; while tracing (no `num_positions`), or when no pair
    repeats, there are none."""
    encoding = MultiScalePositionEncoding(tiny_config())
    with torch.no_grad():
        encoding.gain.copy_(torch.arange(encoding.gain.numel(), dtype=torch.float32).view_as(encoding.gain) / 10 + 1)
    step = float(np.nextafter(np.float32(0.1), np.float32(1)))
    # -0.0 (a sign bit: the key keeps only the low 32 bits of the time's pattern) is a time of its own, equal to 0.0
    times = torch.tensor([[0.1, step, 0.1, 0.0, 1e4, 0.1, -0.0]], dtype=torch.float32)
    modality_ids = torch.tensor([[0, 0, 1, 2, 0, 0, 2]])
    positions = TokenPositions(position_ids=torch.zeros_like(modality_ids), timestamps=times, modality_ids=modality_ids,
                               mask=torch.ones_like(modality_ids, dtype=torch.bool),
                               modality_lengths=torch.ones_like(modality_ids), num_positions=1)
    content = torch.zeros(1, 7, tiny_config().hidden_size)
    table, index, owners = encoding.rows(content, positions)
    assert table.shape[0] == 6 and index.shape == (1, 7) and owners.tolist() == [0, 0, 0, 1, 2, 2]
    torch.testing.assert_close(table[index], encoding(content, positions), atol=0, rtol=0)
    positions.num_positions = None
    assert encoding.rows(content, positions) is None
    positions.num_positions = 1
    positions.timestamps = times.cumsum(-1)  # no pair repeats: per token
    assert encoding.rows(content, positions) is None


@pytest.mark.parametrize("encoding", ["multiscale", "sinusoidal"])
@pytest.mark.parametrize("fusion", ["gated", "concat"])
@pytest.mark.parametrize("lengths", [((40, 10, 5), (40, 10, 5), (30, 8, 5), (40, 10, 0), (17, 3, 2), (40, 9, 5)), None])
def test_fusion_maps_the_encoding_once_per_table_row(encoding, fusion, lengths, monkeypatch):
    """When the encoding comes as table rows, the gated and concat fusions split their map: the content half per token
    (gated: one grouped GEMM in modality order), the encoding half once per row and modality, gathered. Outputs and
    every gradient equal the map over `[content; encoding]` per token."""
    from conftest import assert_same_results, outputs_and_gradients

    from modeling_posattn import positional_encodings

    model = build_model(absolute_position_encoding=encoding, position_fusion=fusion, max_position_embeddings=100)
    # six ragged samples on the same clocks; or three (None), where multiscale has as many rows x modalities as tokens
    # and is split only because each of its rows goes through its own modality's map alone
    inputs = batch_of(random_samples(lengths=lengths) if lengths else random_samples())
    split, rows = [], []
    model.embeddings.fusion.register_forward_pre_hook(lambda module, args: rows.append(args[4]))
    original = positional_encodings.map_of_content_and_rows
    monkeypatch.setattr(positional_encodings, "map_of_content_and_rows",
                        lambda *args, **kwargs: split.append(original(*args, **kwargs)) or split[-1])
    per_row = outputs_and_gradients(model, inputs)
    assert len(split) == 1 and split[0] is not None
    if encoding == "multiscale" and lengths is None:
        assert rows[0][0].shape[0] * model.config.num_modalities >= inputs["modality_ids"].numel()
    model.zero_grad()
    monkeypatch.setattr(positional_encodings, "map_of_content_and_rows", lambda *args, **kwargs: None)
    assert_same_results(outputs_and_gradients(model, inputs), per_row)


class _LinearWithItsOwnForward(torch.nn.Linear):
    def forward(self, inputs):
        return super().forward(inputs) * 2.0


def _wrap_with(kind: str, module: torch.nn.Module, seen: list):
    """Wrap `module`'s forward the way `kind` does, recording each call's input shape in `seen`; returns an undo."""
    hooks = torch.nn.modules.module
    if kind == "forward hook":
        return module.register_forward_hook(lambda m, args, output: seen.append(args[0].shape)).remove
    if kind == "forward pre-hook":
        return module.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape)).remove
    if kind == "backward hook":
        return module.register_full_backward_hook(lambda m, grad_in, grad_out: seen.append(grad_in[0].shape)).remove
    if kind == "global forward hook":
        return hooks.register_module_forward_hook(
            lambda m, args, output: seen.append(args[0].shape) if m is module else None).remove
    if kind == "instance forward":  # what accelerate's add_hook_to_module does
        original = module.forward
        module.forward = lambda *args: seen.append(args[0].shape) or original(*args)
        return lambda: delattr(module, "forward")
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["forward hook", "forward pre-hook", "backward hook", "global forward hook", "instance forward"])
def test_a_wrapped_fusion_map_keeps_its_own_forward(kind):
    """A hook of any kind on the fusion's Linear, a global module hook, or a forward replaced on the instance sees every
    token's `[content; encoding]`: the split map (which uses the weights directly) is not taken for it."""
    model = build_model(absolute_position_encoding="multiscale", position_fusion="concat")
    inputs = batch_of(random_samples(lengths=((40, 10, 5),) * 6))
    seen = []
    undo = _wrap_with(kind, model.embeddings.fusion.projection, seen)
    try:
        model.train()
        model(**inputs).last_hidden_state.sum().backward()
    finally:
        undo()
    assert seen == [(*inputs["modality_ids"].shape, 2 * model.config.hidden_size)]


def test_a_subclass_of_linear_as_fusion_map_keeps_its_own_forward(monkeypatch):
    """A Linear subclass with a forward of its own (a quantized or adapted map) is called, not bypassed by its weights."""
    from modeling_posattn import positional_encodings

    model = build_model(absolute_position_encoding="multiscale", position_fusion="concat")
    projection = model.embeddings.fusion.projection
    model.embeddings.fusion.projection = _LinearWithItsOwnForward(projection.in_features, projection.out_features)
    model.embeddings.fusion.projection.load_state_dict(projection.state_dict())
    inputs = batch_of(random_samples(lengths=((40, 10, 5),) * 6))
    doubled = model(**inputs).last_hidden_state
    monkeypatch.setattr(positional_encodings, "map_of_content_and_rows", lambda *args, **kwargs: None)
    torch.testing.assert_close(model(**inputs).last_hidden_state, doubled, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["forward hook", "instance forward"])
def test_a_wrapped_encoding_is_called_per_token(kind):
    """A hook on the encoding module (or its forward replaced) sees, and may change, every token's encoding: the rows
    path is not taken for it."""
    model = build_model(absolute_position_encoding="multiscale", position_fusion="gated")
    inputs = batch_of(random_samples(lengths=((40, 10, 5),) * 6))
    seen = []
    undo = _wrap_with(kind, model.embeddings.position_encoding, seen)
    try:
        model(**inputs)
    finally:
        undo()
    assert len(seen) == 1


@torch.no_grad()
def test_a_hooked_learned_table_is_looked_up_per_token():
    """A hook on the `learned` encoding's table runs (doubling its output is doubling the table), also where the table
    has fewer rows than the batch has tokens (the rows path, which reads the table's weight, is not taken for it)."""
    inputs = batch_of(random_samples())
    scaled = build_model(absolute_position_encoding="learned", max_position_embeddings=81)
    scaled.embeddings.position_encoding.table.weight.mul_(2)
    hooked = build_model(absolute_position_encoding="learned", max_position_embeddings=81)
    table = hooked.embeddings.position_encoding.table
    assert table.weight.shape[0] < inputs["attention_mask"].numel()
    calls = []
    table.register_forward_hook(lambda module, args, output: calls.append(1) or output * 2)
    torch.testing.assert_close(hooked(**inputs).last_hidden_state, scaled(**inputs).last_hidden_state)
    assert calls


def test_gated_fusion_of_a_width_grouped_mm_cannot_take_falls_back(monkeypatch):
    """Hidden size 12 in bfloat16 (24-byte rows: grouped_mm needs multiples of 16): the split map is not grouped, and the
    model runs as it did, several modalities and gated fusion over multiscale rows."""
    from modeling_posattn import positional_encodings

    model = build_model(absolute_position_encoding="multiscale", position_fusion="gated", hidden_size=12,
                        num_attention_heads=2, multiscale_num_bands=6).to(torch.bfloat16)
    inputs = batch_of(random_samples(lengths=((40, 10, 5),) * 6))
    inputs["input_values"] = inputs["input_values"].to(torch.bfloat16)
    rows_path = model(**inputs).last_hidden_state
    monkeypatch.setattr(positional_encodings, "map_of_content_and_rows", lambda *args, **kwargs: None)
    torch.testing.assert_close(rows_path, model(**inputs).last_hidden_state, atol=0, rtol=0)


def positions_of(mask: torch.Tensor, padded: bool | None):
    from modeling_posattn.positional_encodings import TokenPositions

    zeros = torch.zeros(mask.shape, dtype=torch.long)
    return TokenPositions(zeros, zeros.float(), zeros, mask, zeros, padded=padded)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@torch.no_grad()
def test_mean_pooling_is_the_same_with_and_without_padding(dtype):
    """The plain mean of an unpadded batch and the masked mean of a padded one pool a sample alike: both sum in float32
    (or wider) and divide by the exact count (a half-precision sum of 257 ones is 256)."""
    hidden = torch.randn(2, 257, 8).to(dtype)
    mask = torch.ones(2, 257, dtype=torch.bool)
    plain, masked = (positions_of(mask, padded).mean_over_real_tokens(hidden) for padded in (False, True))
    torch.testing.assert_close(masked, plain, atol=0, rtol=0)
    torch.testing.assert_close(plain.double(), hidden.double().mean(1), atol=1e-2 if dtype != torch.float32 else 1e-6, rtol=0)


@torch.no_grad()
def test_mean_pooling_of_an_unpadded_batch_makes_no_token_sized_product():
    """Without padding the pooled output is a plain mean: no `(B, L, H)` product of the hidden states and the mask."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestOutput(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if isinstance(result, torch.Tensor):
                self.largest = max(self.largest, result.numel())
            return result

    hidden, mask = torch.randn(2, 50, 8), torch.ones(2, 50, dtype=torch.bool)
    for padded, token_sized in ((False, False), (True, True)):
        with LargestOutput() as mode:
            positions_of(mask, padded).mean_over_real_tokens(hidden)
        assert (mode.largest >= hidden.numel()) == token_sized


@torch.no_grad()
def test_mean_pooling_while_padding_is_unknown_masks():
    """While tracing `padded` is None: the padding is left out of the mean, as with `padded=True`."""
    hidden = torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6], dtype=torch.bool)
    expected = torch.stack([hidden[0, :3].mean(0), hidden[1].mean(0)])
    torch.testing.assert_close(positions_of(mask, None).mean_over_real_tokens(hidden), expected)

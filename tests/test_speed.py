"""The speed work of issue 13, tested for behaviour only (never timings): the int32 relative-bias buckets, the
query-blocked bias attention against the dense one, the cheaper rotary against the textbook formula, and export."""

import numpy as np
import pytest
import torch
from conftest import assert_same_results, batch_of, build_model, outputs_and_gradients, random_samples, tiny_config

from modeling_posattn import PosAttnForSequenceClassification

from modeling_posattn.bias_posattn import RelativeTimeBias


def relative_bias(num_buckets=32, max_distance=128, units=1.0) -> RelativeTimeBias:
    return RelativeTimeBias(
        tiny_config(
            relative_position_encoding="relative_bias",
            relative_attention_num_buckets=num_buckets,
            relative_attention_max_distance=max_distance,
            time_units_per_second=units,
        )
    )


@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (32, 9), (16, 100), (64, 1000), (34, 50)])
def test_relative_bias_buckets_match_t5(num_buckets, max_distance):
    """Where T5's formula is well defined (max_distance > num_buckets // 4), the bucket table reproduces it exactly."""
    from transformers.models.t5.modeling_t5 import T5Attention

    distance = torch.arange(-5000, 5001)
    expected = T5Attention._relative_position_bucket(distance, True, num_buckets, max_distance)
    buckets = relative_bias(num_buckets, max_distance).bucket(distance.double())
    assert buckets.dtype == torch.int32
    torch.testing.assert_close(buckets.long(), expected, rtol=0, atol=0)


def test_relative_bias_at_the_shortest_valid_max_distance():
    """max_distance == num_buckets // 4 used to crash (log(1) = 0: `IndexError: index -9223372036854775792`); the config
    now refuses it (tests/test_bad_inputs.py), and the shortest valid range, one past it, buckets like T5 and runs."""
    from transformers.models.t5.modeling_t5 import T5Attention

    distance = torch.arange(-50, 51)
    expected = T5Attention._relative_position_bucket(distance, True, 32, 9)
    torch.testing.assert_close(relative_bias(32, 9).bucket(distance.double()).long(), expected, rtol=0, atol=0)
    model = build_model(relative_position_encoding="relative_bias", relative_attention_max_distance=9)
    assert torch.isfinite(model(**batch_of(random_samples())).last_hidden_state).all()


def test_relative_bias_rejects_unusable_bucket_settings():
    with pytest.raises(ValueError, match="relative_attention_num_buckets"):
        relative_bias(num_buckets=1)


@pytest.mark.parametrize("origin", [0.0, 1.0, 1234.5678, 1e6])
def test_relative_bias_ignores_the_clock_origin(origin):
    """Distances on a rounding tie (10 ms at 50 units/s = 0.5 units) land in one bucket whatever the origin: the
    bucketing rounds half up with a tolerance for float error, instead of `round` flipping on the last bit."""
    torch.manual_seed(0)
    encoding = relative_bias(32, 64, units=50.0)
    # 100 Hz and 30 Hz frames, built in float64 so that the shifted clock really is read at float64 precision
    times = torch.cat((torch.arange(200, dtype=torch.float64) / 100, torch.arange(60, dtype=torch.float64) / 30 + 0.01))
    heads = torch.arange(encoding.num_heads).view(-1, 1, 1)

    def bias(t):
        return encoding.score((t[None, :] - t[:, None]).unsqueeze(0), heads)

    torch.testing.assert_close(bias(times + origin), bias(times), atol=1e-5, rtol=0)


def blocked_and_dense(name, implementation, rows=7, **overrides):
    """Two identical models, one forced onto the query-blocked bias path with `rows` query rows per block."""
    inputs = batch_of(random_samples(lengths=((40, 10, 5), (17, 3, 0), (50, 12, 9))))
    batch, length = inputs["attention_mask"].shape
    settings = dict(relative_position_encoding=name, attn_implementation=implementation, **overrides)
    dense = build_model(**settings)
    row_bytes = batch * dense.config.num_attention_heads * length * 4
    blocked = build_model(dense_bias_max_bytes=0, attention_bias_block_bytes=rows * row_bytes, **settings)
    return dense, blocked, inputs


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
@pytest.mark.parametrize("checkpointed", [True, False])
def test_query_blocked_bias_matches_dense(name, implementation, checkpointed):
    """Blocks of query rows, each with only its own rows of the bias, give the dense result: forward and gradients."""
    dense, blocked, inputs = blocked_and_dense(name, implementation, attention_bias_checkpoint=checkpointed)
    dense_results, blocked_results = outputs_and_gradients(dense, inputs), outputs_and_gradients(blocked, inputs)
    assert_same_results(dense_results, blocked_results)
    if name == "relative_bias":  # the learned bias table gets its gradient through the blocks too
        assert "relative_position_encoding.relative_attention_bias.weight" in blocked_results[1]


@torch.no_grad()
def test_query_blocked_bias_never_builds_the_square_bias(monkeypatch):
    """Past `dense_bias_max_bytes` sdpa only ever sees a `(B, heads, rows, L)` bias; below it, the dense one."""
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, **kwargs):
        seen.append(tuple(attn_mask.shape))
        return original(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    dense, blocked, inputs = blocked_and_dense("relative_bias", "sdpa", rows=16)
    batch, length = inputs["attention_mask"].shape
    dense(**inputs)
    assert set(seen) == {(batch, 4, length, length)}
    seen.clear()
    blocked(**inputs)
    assert len(seen) == 2 * -(-length // 16) and all(shape[2] <= 16 and shape[3] == length for shape in seen)


def calls_per_slice(monkeypatch, always: bool) -> None:
    """Make the bias code work per `(sample, head)` slice whatever its size (`always`), or keep its threshold."""
    from modeling_posattn import attention_posattn, bias_posattn

    if always:
        monkeypatch.setattr(attention_posattn, "SLICE_CALL_MIN_ELEMENTS", 1)
        monkeypatch.setattr(bias_posattn, "SLICE_CALL_MIN_ELEMENTS", 1)


@pytest.mark.parametrize("per_slice", [False, True], ids=["batched", "per_slice"])
@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_sdpa_with_bias_gradient_matches_the_math_path(block_rows, per_slice, monkeypatch):
    """The flash forward + blocked FlashAttention-2 backward gives SDPA's math-path output and all four gradients,
    whatever the block size (a last block shorter than the others included) and however dS is written (per slice or
    batched), with padding keys at the dtype's minimum."""
    from modeling_posattn.attention_posattn import SdpaWithBiasGradient

    calls_per_slice(monkeypatch, per_slice)

    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 40, 8, requires_grad=True) for _ in range(3))
    bias = torch.randn(2, 3, 40, 40)
    bias[1, :, :, 33:] = torch.finfo(torch.float32).min
    bias.requires_grad_()
    inputs = (query, key, value, bias)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=0.3)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    output = SdpaWithBiasGradient.apply(query, key, value, bias, 0.3, block_rows)
    grads = torch.autograd.grad(output.square().sum(), inputs)
    torch.testing.assert_close(output, expected)
    for name, grad, expected_grad in zip("qkvb", grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("bias_dtype", ["float32", "half"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sdpa_with_bias_gradient_takes_half_precision_queries(dtype, bias_dtype):
    """Under autocast q, k and v come in half precision and the bias in float32 (or theirs): the flash forward takes
    them so, the backward runs in float32, and every result is as close to float64 on the same inputs as the half
    precision of the output allows (SDPA's math path: 2-4e-3 in bfloat16, 2-5e-4 in float16). Each row of the bias
    gradient sums to 0, as it must, though `delta` comes from the rounded output."""
    from modeling_posattn.attention_posattn import SdpaWithBiasGradient

    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 40, 8).to(dtype).requires_grad_() for _ in range(3))
    bias = torch.randn(2, 3, 40, 40).to(torch.float32 if bias_dtype == "float32" else dtype)
    bias[1, :, :, 33:] = torch.finfo(bias.dtype).min
    bias.requires_grad_()
    gradient = torch.randn(2, 3, 40, 8).to(dtype)
    output = SdpaWithBiasGradient.apply(query, key, value, bias, 0.3, 7)
    grads = torch.autograd.grad(output, (query, key, value, bias), gradient)
    assert output.dtype == dtype and [grad.dtype for grad in grads] == [dtype, dtype, dtype, bias.dtype]

    exact = [tensor.detach().double().requires_grad_() for tensor in (query, key, value, bias)]
    exact[3].data[1, :, :, 33:] = torch.finfo(torch.float64).min
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        expected = torch.nn.functional.scaled_dot_product_attention(*exact[:3], attn_mask=exact[3], scale=0.3)
    expected_grads = torch.autograd.grad(expected, exact, gradient.double())
    bound = 1e-2 if dtype == torch.bfloat16 else 1.5e-3
    for name, result, reference in zip(["output", *"qkvb"], (output, *grads), (expected, *expected_grads)):
        error = (result.double() - reference).abs().max() / reference.abs().max()
        assert error < bound, (name, error.item())
    if bias.dtype == torch.float32:
        row_sums = grads[3].double().sum(-1).abs().max() / grads[3].abs().max()
        assert row_sums < 1e-5, row_sums.item()


@pytest.mark.parametrize("path", ["dense, three modalities", "dense, one modality", "query-blocked"])
def test_relative_bias_under_autocast_trains_through_the_bias_gradient_path(path, monkeypatch):
    """bfloat16 autocast on CPU keeps `SdpaWithBiasGradient` (q and k in bfloat16; the bias in float32 with three
    modalities, in bfloat16 with one, whose content stays bfloat16), on the dense bias and over blocks of query rows:
    SDPA's math path, which it took before, costs 2x the whole training step (scripts/benchmark_autocast.py). The
    table's gradient is float32's to bfloat16's precision."""
    from conftest import MODALITIES

    from modeling_posattn import attention_posattn

    calls = []
    original = attention_posattn.SdpaWithBiasGradient.apply
    monkeypatch.setattr(attention_posattn.SdpaWithBiasGradient, "apply", lambda *args: calls.append(args[3].dtype) or original(*args))
    chosen = {"audio": MODALITIES["audio"]} if path == "dense, one modality" else MODALITIES
    blocked = dict(dense_bias_max_bytes=0) if path == "query-blocked" else {}
    model = build_model(relative_position_encoding="relative_bias", attn_implementation="sdpa", modalities=chosen, **blocked)
    samples = random_samples(lengths=((40, 0, 0), (17, 0, 0))) if path == "dense, one modality" else random_samples()
    inputs = batch_of(samples, modalities=chosen)
    table = model.relative_position_encoding.relative_attention_bias.weight
    weights = torch.randn(model(**inputs).last_hidden_state.shape)
    table_grads = []
    for autocast in (False, True):
        calls.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            hidden = model(**inputs).last_hidden_state
        table_grads.append(torch.autograd.grad((hidden.float() * weights).sum(), table)[0])
    assert calls and set(calls) == {torch.bfloat16 if path == "dense, one modality" else torch.float32}, calls
    error = (table_grads[1] - table_grads[0]).abs().max() / table_grads[0].abs().max()
    assert error < 5e-2, error.item()  # bfloat16's rounding of q, k, v, the bias and the layers' activations


@pytest.mark.parametrize("mask", ["none", "key padding", "float bias"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sdpa_gives_sdpas_output_and_float32_gradients(dtype, mask):
    """`HalfPrecisionSdpa` (autocast training on CPU): SDPA's own output (the same flash forward), and the float32 flash
    backward's gradients on the upcast inputs and output, in the inputs' dtype: about as close to float64 on the same
    inputs as SDPA's half-precision backward's (within 1.5x its error, plus 1e-3)."""
    from modeling_posattn.attention_posattn import HalfPrecisionSdpa, float_mask

    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 40, 8).to(dtype).requires_grad_() for _ in range(3))
    gradient = torch.randn(2, 3, 40, 8).to(dtype)
    attention_mask = {"none": None, "key padding": torch.ones(2, 1, 1, 40, dtype=torch.bool),
                      "float bias": torch.randn(2, 3, 40, 40)}[mask]
    if mask == "key padding":
        attention_mask[1, ..., 31:] = False
    inputs = (query, key, value)
    flash_mask = float_mask(attention_mask, query)
    output = HalfPrecisionSdpa.apply(*inputs, flash_mask, 0.3)
    grads = torch.autograd.grad(output, inputs, gradient)
    expected = torch.nn.functional.scaled_dot_product_attention(*inputs, attn_mask=attention_mask, scale=0.3)
    sdpa_grads = torch.autograd.grad(expected, inputs, gradient)
    torch.testing.assert_close(output, expected, atol=0, rtol=0)
    _, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(*inputs, attn_mask=flash_mask, scale=0.3)
    float32_grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        *(tensor.float() for tensor in (gradient, *inputs, output)), logsumexp, 0.0, False, attn_mask=flash_mask, scale=0.3
    )
    for grad, float32_grad in zip(grads, float32_grads):
        torch.testing.assert_close(grad, float32_grad.to(dtype), atol=0, rtol=0)

    exact = [tensor.detach().double().requires_grad_() for tensor in inputs]
    exact_mask = attention_mask if attention_mask is None or attention_mask.dtype == torch.bool else attention_mask.double()
    reference = torch.nn.functional.scaled_dot_product_attention(*exact, attn_mask=exact_mask, scale=0.3)
    for name, grad, sdpa_grad, exact_grad in zip("qkv", grads, sdpa_grads, torch.autograd.grad(reference, exact, gradient.double())):
        scale = exact_grad.abs().max()
        error, sdpa_error = ((result.double() - exact_grad).abs().max() / scale for result in (grad, sdpa_grad))
        assert error <= 1.5 * sdpa_error + 1e-3, (name, error.item(), sdpa_error.item())


def test_half_precision_sdpa_has_second_derivatives():
    """A gradient penalty through `HalfPrecisionSdpa` (`create_graph=True`) differentiates SDPA's math path: the
    penalty's gradients match float64's on the same inputs to bfloat16's precision."""
    from modeling_posattn.attention_posattn import HalfPrecisionSdpa

    torch.manual_seed(0)
    inputs = [torch.randn(1, 2, 12, 8).bfloat16().requires_grad_() for _ in range(3)]
    weights = torch.randn(1, 2, 12, 8)

    def penalty_gradients(tensors, attention):
        (grad_query,) = torch.autograd.grad((attention(*tensors).float() * weights).sum(), tensors[0], create_graph=True)
        return torch.autograd.grad(grad_query.float().square().sum(), tensors[1:])

    grads = penalty_gradients(inputs, lambda q, k, v: HalfPrecisionSdpa.apply(q, k, v, None, 0.3))
    exact = [tensor.detach().double().requires_grad_() for tensor in inputs]
    weights = weights.double()
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):  # torch's flash has no double backward
        expected = penalty_gradients(exact, lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3))
    for grad, reference in zip(grads, expected):
        assert (grad.double() - reference).abs().max() / reference.abs().max() < 5e-2


@pytest.mark.parametrize("encoding", ["none", "rope", "alibi"])
def test_training_under_autocast_takes_the_float32_backward(encoding, monkeypatch):
    """A training step under CPU autocast runs its attention through `HalfPrecisionSdpa` (each layer once), with the
    forward SDPA gave (`alibi`'s float32 bias cast to bfloat16, as autocast casts SDPA's inputs), so that a forward
    without gradients (as reentrant checkpointing runs it) gives the same; inference and float32 keep SDPA."""
    from modeling_posattn import attention_posattn

    calls = []
    original = attention_posattn.HalfPrecisionSdpa.apply
    monkeypatch.setattr(attention_posattn.HalfPrecisionSdpa, "apply", lambda *args: calls.append(1) or original(*args))
    model = build_model(relative_position_encoding=encoding, attn_implementation="sdpa").train()
    inputs = batch_of(random_samples())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        without_gradients = model(**inputs).last_hidden_state
    model(**inputs).last_hidden_state.sum().backward()
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model(**inputs).last_hidden_state
    assert len(calls) == model.config.num_hidden_layers
    torch.testing.assert_close(hidden, without_gradients, atol=0, rtol=0)


def test_torch_func_grad_runs_on_a_half_precision_model():
    """`torch.func.grad` over a bfloat16 model (per-sample gradients, say): the custom attention Functions, which have
    no vmap rule, step aside for SDPA while a transform runs; the gradients agree with autograd's."""
    model = build_model(relative_position_encoding="rope", attn_implementation="sdpa").train().to(torch.bfloat16)
    inputs = batch_of(random_samples())
    inputs["input_values"] = inputs["input_values"].bfloat16()
    parameters = {name: parameter.detach() for name, parameter in model.named_parameters()}

    def loss(parameters):
        return torch.func.functional_call(model, parameters, kwargs=inputs).last_hidden_state.float().square().mean()

    grads = torch.func.grad(loss)(parameters)
    model(**inputs).last_hidden_state.float().square().mean().backward()
    for name, parameter in model.named_parameters():
        scale = parameter.grad.float().abs().max()
        assert (grads[name].float() - parameter.grad.float()).abs().max() <= 0.05 * scale + 1e-6, name


def test_sdpa_with_bias_gradient_has_second_derivatives():
    """`create_graph=True` (a gradient penalty) differentiates the math path: second derivatives exist and are right,
    also when only some inputs need a gradient."""
    from modeling_posattn.attention_posattn import SdpaWithBiasGradient

    torch.manual_seed(0)
    inputs = [torch.randn(1, 2, 6, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    inputs.append(torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradgradcheck(lambda q, k, v, b: SdpaWithBiasGradient.apply(q, k, v, b, 0.3, 4), inputs)
    query, key, value, bias = inputs
    frozen = [tensor.detach() for tensor in (query, key, value)]
    output = SdpaWithBiasGradient.apply(*frozen, bias, 0.3, 4)
    (grad_bias,) = torch.autograd.grad(output.square().sum(), bias, create_graph=True)
    assert grad_bias.requires_grad


def test_relative_bias_gradient_penalty_on_the_table_is_differentiable():
    """A penalty on the table's own gradient (`create_graph=True` through `HeadsFirstLookup`, whose `bincount` has no
    derivative) takes autograd's lookup gradient: second derivatives match the plain indexing formula."""
    from modeling_posattn.bias_posattn import HeadsFirstLookup

    torch.manual_seed(0)
    table = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 9, (2, 1, 5, 6), dtype=torch.int32)
    heads = torch.arange(3).view(1, -1, 1, 1)
    weights = torch.randn(2, 3, 5, 6, dtype=torch.float64)

    def penalty(lookup):
        (grad,) = torch.autograd.grad((lookup(table) * weights).sin().sum(), table, create_graph=True)
        return torch.autograd.grad(grad.square().sum(), table)[0]

    torch.testing.assert_close(penalty(lambda t: HeadsFirstLookup.apply(t, index)), penalty(lambda t: t[index.long(), heads]))

def test_relative_bias_trains_through_the_bias_gradient_path_and_matches_eager(monkeypatch):
    """On CPU, sdpa with `relative_bias` trains through `SdpaWithBiasGradient` and `HeadsFirstLookup` (not SDPA's math
    path and autograd's scatter), with eager's outputs and gradients."""
    from modeling_posattn import attention_posattn, positional_encodings

    calls = {"attention": 0, "lookup": 0}
    for module, name, key in ((attention_posattn, "SdpaWithBiasGradient", "attention"),
                              (positional_encodings, "HeadsFirstLookup", "lookup")):
        original = getattr(module, name).apply

        def counted(*args, original=original, key=key):
            calls[key] += 1
            return original(*args)

        monkeypatch.setattr(getattr(module, name), "apply", counted)
    inputs = batch_of(random_samples())
    results = []
    for implementation in ("sdpa", "eager"):
        model = build_model(relative_position_encoding="relative_bias", attn_implementation=implementation)
        results.append(outputs_and_gradients(model, inputs))
        if implementation == "sdpa":
            layers = model.config.num_hidden_layers
            assert calls == {"attention": layers, "lookup": 1}, calls
    assert "relative_position_encoding.relative_attention_bias.weight" in results[0][1]
    assert_same_results(results[1], results[0])


@pytest.mark.parametrize("per_slice", [False, True], ids=["batched", "per_slice"])
def test_heads_first_lookup_gradient_matches_autograds_index(per_slice, monkeypatch):
    from modeling_posattn.bias_posattn import HeadsFirstLookup

    calls_per_slice(monkeypatch, per_slice)

    torch.manual_seed(0)
    table = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 9, (2, 1, 5, 6), dtype=torch.int32)
    heads = torch.arange(3).view(1, -1, 1, 1)
    torch.testing.assert_close(HeadsFirstLookup.apply(table, index), table[index, heads])
    assert torch.autograd.gradcheck(lambda t: HeadsFirstLookup.apply(t, index), (table,))



def allocations_of_at_least(size: int, function) -> list[tuple[str, int]]:
    """`(operator, bytes)` of every CPU allocation of `size` bytes or more while `function` runs (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    return [(event.name, event.self_cpu_memory_usage) for event in profiler.events() if event.self_cpu_memory_usage >= size]


@pytest.mark.parametrize("padded", [False, True])
def test_dense_relative_bias_allocates_its_output_and_two_pair_sized_temporaries(padded, monkeypatch):
    """Each new L x L tensor costs first-touch page faults as well as its pass: the dense `relative_bias` makes the time
    differences, their int32 table rows (in place on the differences) and the `(B, heads, L, L)` bias, selected per
    sample and head straight into it (formerly ten pair-sized tensors or more: one per arithmetic step, per head, a
    stack). Padding keys look up an extra row of the dtype's minimum, so the table's gradient needs no pair-sized
    tensor either (a differentiable `masked_fill` cloned the bias gradient). Values and gradients match the score path
    (the one traced graphs use)."""
    from modeling_posattn.bias_posattn import dense_attention_bias
    from modeling_posattn.positional_encodings import TokenPositions

    calls_per_slice(monkeypatch, True)  # slices this small are worked on per head (copies cost less than calls)
    batch, length = 2, 64
    encoding = relative_bias()
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 50:] = not padded
    times = torch.rand(batch, length).cumsum(1)
    positions = TokenPositions(torch.arange(length).expand(batch, -1), times, torch.zeros(batch, length, dtype=torch.long),
                               mask, None, padded=padded)
    pair_sized = batch * length * length * 4
    big = allocations_of_at_least(pair_sized, lambda: dense_attention_bias(encoding, positions, torch.float32))
    assert len(big) == 3, big
    bias = dense_attention_bias(encoding, positions, torch.float32)
    gradient = torch.randn_like(bias)
    table = encoding.relative_attention_bias.weight
    assert allocations_of_at_least(pair_sized, lambda: torch.autograd.grad(bias, table, gradient, retain_graph=True)) == []
    heads = torch.arange(encoding.num_heads).view(1, -1, 1, 1)
    expected = encoding.score((times[:, None, :] - times[:, :, None]).unsqueeze(1), heads)
    expected = expected.masked_fill(~mask[:, None, None, :], torch.finfo(torch.float32).min)
    torch.testing.assert_close(bias, expected)
    torch.testing.assert_close(torch.autograd.grad(bias, table, gradient)[0], torch.autograd.grad(expected, table, gradient)[0],
                               rtol=1e-4, atol=1e-4)


def test_relative_bias_table_gradient_is_summed_in_the_tables_dtype():
    """A bfloat16 bias (autocast) is looked up in the float32 table's dtype and cast after, so the table's gradient is
    summed in float32, as the float32 bias's is."""
    from modeling_posattn.bias_posattn import dense_attention_bias
    from modeling_posattn.positional_encodings import TokenPositions

    torch.manual_seed(0)
    batch, length = 2, 48
    encoding = relative_bias()
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 40:] = False
    times = torch.rand(batch, length).cumsum(1)
    positions = TokenPositions(torch.arange(length).expand(batch, -1), times, torch.zeros(batch, length, dtype=torch.long),
                               mask, None, padded=True)
    table = encoding.relative_attention_bias.weight
    bias = dense_attention_bias(encoding, positions, torch.bfloat16)
    assert bias.dtype == torch.bfloat16
    gradient = torch.randn(bias.shape).to(torch.bfloat16)
    expected = torch.autograd.grad(dense_attention_bias(encoding, positions, torch.float32), table, gradient.float())[0]
    torch.testing.assert_close(torch.autograd.grad(bias, table, gradient)[0], expected)

def test_heads_first_lookup_backward_copies_no_per_head_slice(monkeypatch):
    """The table gradient is summed per `(sample, head)` slice, each contiguous in the `(B, heads, L, L)` gradient: a
    per-head slice across samples would be copied first (a `B x L x L` tensor per head)."""
    from modeling_posattn.bias_posattn import HeadsFirstLookup

    calls_per_slice(monkeypatch, True)
    batch, length = 3, 64
    table = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 9, (batch, 1, length, length), dtype=torch.int32)
    output = HeadsFirstLookup.apply(table, index)
    gradient = torch.randn_like(output)
    grads = []
    big = allocations_of_at_least(batch * length * length * 8, lambda: grads.extend(torch.autograd.grad(output, table, gradient)))
    assert big == [], big
    heads = torch.arange(4).view(1, -1, 1, 1)
    torch.testing.assert_close(grads[0], torch.autograd.grad(table[index.long(), heads], table, gradient)[0])

def test_bias_gradient_backward_reuses_one_block_of_scores(monkeypatch):
    """`SdpaWithBiasGradient`'s backward allocates the bias gradient and one block of scores for all blocks (formerly two
    fresh score blocks per block of query rows)."""
    from modeling_posattn.attention_posattn import SdpaWithBiasGradient

    calls_per_slice(monkeypatch, True)
    torch.manual_seed(0)
    batch, heads, length, rows = 1, 2, 128, 16
    query, key, value = (torch.randn(batch, heads, length, 8, requires_grad=True) for _ in range(3))
    bias = torch.randn(batch, heads, length, length, requires_grad=True)
    output = SdpaWithBiasGradient.apply(query, key, value, bias, 0.3, rows)
    block = batch * heads * rows * length * 4
    big = allocations_of_at_least(block, lambda: torch.autograd.grad(output.sum(), (query, key, value, bias)))
    assert sorted(size for _, size in big) == [block, length // rows * block], big

def test_rotary_matches_the_textbook_formula_forward_and_backward():
    """The roll + signed-sin rotation equals `x cos + rotate_half(x) sin` (RoFormer / transformers' llama), gradients too."""
    from modeling_posattn.rotary_posattn import apply_rotary_pos_emb, rotate_half

    torch.manual_seed(0)
    model = build_model(absolute_position_encoding="none", relative_position_encoding="time_rope")
    positions = model.token_positions(**{k: v for k, v in batch_of(random_samples()).items()})
    cos, sin = model.relative_position_encoding(torch.zeros(3, 1, 32), positions)
    q = torch.randn(3, 4, cos.shape[1], 8, requires_grad=True)
    k = torch.randn(3, 4, cos.shape[1], 8, requires_grad=True)
    rotated = apply_rotary_pos_emb(q, k, cos, sin)
    textbook = tuple(x * cos[:, None] + rotate_half(x) * sin[:, None] for x in (q, k))
    for new, old in zip(rotated, textbook):
        torch.testing.assert_close(new, old, atol=1e-6, rtol=0)
    grads = torch.autograd.grad(sum(x.square().sum() for x in rotated), (q, k))
    expected = torch.autograd.grad(sum(x.square().sum() for x in textbook), (q, k))
    for new, old in zip(grads, expected):
        torch.testing.assert_close(new, old, atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoding", ["rope", "time_rope"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_complex_rotation_of_interleaved_pairs_matches_the_half_layout(encoding, implementation, monkeypatch):
    """Eager float32 rotates q and k by one complex product on projections whose rows put each rotation pair side by
    side; the model's outputs, attention weights and gradients equal those of the half-layout rotation (what tracing
    uses), and the complex path is the one taken."""
    from modeling_posattn.rotary_posattn import RotaryAngles, signed_sin

    model = build_model(PosAttnForSequenceClassification, absolute_position_encoding="none",
                        relative_position_encoding=encoding, attn_implementation=implementation).train()
    inputs = {**batch_of(random_samples()), "labels": torch.tensor([0, 2, 1])}
    products = []
    model.posattn.layers[0].self_attn.register_forward_pre_hook(
        lambda module, args, kwargs: products.append(kwargs["position_embeddings"].phasors is not None), with_kwargs=True)

    def run():
        model.zero_grad()
        output = model(**inputs, output_attentions=implementation == "eager")
        output.loss.backward()
        return output, [parameter.grad.clone() for parameter in model.parameters() if parameter.grad is not None]

    complex_output, complex_grads = run()
    monkeypatch.setattr(model.posattn, "rotary_inputs", lambda cos, sin: RotaryAngles(cos, signed_sin(sin)))
    half_output, half_grads = run()
    assert products == [True, False]
    torch.testing.assert_close(complex_output.logits, half_output.logits, atol=1e-5, rtol=1e-5)
    if implementation == "eager":
        for new, old in zip(complex_output.attentions, half_output.attentions):
            torch.testing.assert_close(new, old, atol=1e-5, rtol=1e-5)
    for new, old in zip(complex_grads, half_grads):
        torch.testing.assert_close(new, old, atol=1e-5, rtol=1e-4)


def test_wrapped_or_hooked_query_key_projections_keep_their_own_forward():
    """The complex rotation uses q_proj / k_proj rows directly only for plain Linears without hooks: a hook fires, and an
    adapter wrapping q_proj (LoRA-style) changes the output and gets its gradient."""
    from torch import nn

    class Adapter(nn.Linear):
        def __init__(self, base: nn.Linear):
            super().__init__(base.in_features, base.out_features)
            self.load_state_dict(base.state_dict())
            self.delta = nn.Parameter(torch.full((base.out_features,), 0.1))

        def forward(self, hidden_states):
            return super().forward(hidden_states) + self.delta

    model = build_model(absolute_position_encoding="none", relative_position_encoding="rope")
    inputs = batch_of(random_samples())
    plain = model(**inputs).last_hidden_state
    calls = []
    handle = model.layers[0].self_attn.q_proj.register_forward_hook(lambda *args: calls.append(1))
    torch.testing.assert_close(model(**inputs).last_hidden_state, plain, atol=1e-5, rtol=1e-5)
    assert calls == [1]
    handle.remove()
    attention = model.layers[0].self_attn
    attention.q_proj = Adapter(attention.q_proj)
    adapted = model(**inputs).last_hidden_state
    assert (adapted - plain).abs().max() > 1e-3
    adapted.square().sum().backward()
    assert attention.q_proj.delta.grad is not None and attention.q_proj.delta.grad.abs().sum() > 0


def test_sinusoidal_table_is_never_longer_than_the_batch():
    """Position ids far past the batch's tokens (an offset stream) are encoded per token: no table of that length."""
    model = build_model(absolute_position_encoding="sinusoidal")
    inputs = batch_of(random_samples())
    inputs["position_ids"] = inputs["position_ids"] + 10**9
    positions = model.token_positions(inputs["input_values"], inputs.get("input_ids"), inputs["modality_ids"],
                                      inputs["position_ids"], None, inputs["attention_mask"])
    assert positions.num_positions > 10**9
    assert model.embeddings.position_encoding.rows(torch.zeros(1), positions) is None
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).last_hidden_state).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_complex_rotation_of_half_precision_queries(dtype):
    """q and k in half precision (autocast projects them so) are rotated in float32 and keep their dtype."""
    from modeling_posattn.rotary_posattn import rotate_interleaved

    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8)
    phasors = torch.polar(torch.ones(2, 5, 1, 4), torch.rand(2, 5, 1, 4) * 6)
    rotated = rotate_interleaved(x.to(dtype), phasors)
    assert rotated.dtype == dtype
    torch.testing.assert_close(rotated.float(), rotate_interleaved(x.to(dtype).float(), phasors), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_key_padding_mask_needs_no_host_sync(implementation):
    """The key mask is decided from whether a mask was passed, never from its values: it traces as one graph."""
    model = build_model(attn_implementation=implementation)
    hidden, mask = torch.zeros(2, 5, 32), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    compiled = torch.compile(model.key_padding_mask, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(hidden, mask, True), model.key_padding_mask(hidden, mask, True))
    assert model.key_padding_mask(hidden, mask, padded=False) is None
    inputs = batch_of(random_samples(lengths=((6, 2, 0), (6, 2, 0))))
    with torch.no_grad():
        no_mask = model(**{k: v for k, v in inputs.items() if k != "attention_mask"}).last_hidden_state
        torch.testing.assert_close(model(**inputs).last_hidden_state, no_mask, atol=1e-6, rtol=0)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_unpadded_batch_attends_without_a_mask(implementation):
    """A batch whose `attention_mask` is all ones reaches the layers with no mask (SDPA's fastest kernel, as BERT's
    `mask.all()` check gives it), learned from the value checks' one host sync; a padded batch keeps its mask.
    Outputs are those of the masked computation. (Under tracing the mask is always kept: the zero-graph-break tests.)"""
    model = build_model(attn_implementation=implementation).eval()
    masks = []
    model.layers[0].register_forward_pre_hook(lambda module, args: masks.append(args[1]))
    syncs = []
    original_tolist = torch.Tensor.tolist

    def counting_tolist(tensor):
        syncs.append(1)
        return original_tolist(tensor)

    full = batch_of(random_samples(lengths=((6, 2, 1), (6, 2, 1))))
    padded = batch_of(random_samples(lengths=((6, 2, 1), (3, 2, 0))))
    assert bool(full["attention_mask"].all()) and not bool(padded["attention_mask"].all())
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "tolist", counting_tolist)
        unmasked = model(**full).last_hidden_state
        assert masks[-1] is None and len(syncs) == 1
        model(**padded)
        assert masks[-1] is not None
    always_masked = model.key_padding_mask
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "key_padding_mask", lambda hidden_states, mask, padded: always_masked(hidden_states, mask, True))
        masked = model(**full).last_hidden_state
        assert masks[-1] is not None
    torch.testing.assert_close(unmasked, masked, atol=1e-6, rtol=0)


def per_modality_by_boolean_index(linears, inputs, modality_ids):
    """The gated fusion's former formula: each modality's linear map on a boolean-index gather of its tokens."""
    output = inputs.new_zeros(*modality_ids.shape, linears[0].out_features)
    for index, linear in enumerate(linears):
        selected = modality_ids == index
        output[selected] = linear(inputs[selected])
    return output


@pytest.mark.parametrize("num_modalities", [1, 3])
def test_gated_fusion_without_boolean_indexing_matches_the_former_formula(num_modalities):
    """The stacked-and-gathered gate equals the per-modality gather/scatter one, forward and gradients."""
    from modeling_posattn.positional_encodings import GatedFusion, select_per_modality

    torch.manual_seed(0)
    modalities = dict(list(tiny_config().modalities.items())[:num_modalities])
    fusion = GatedFusion(tiny_config(modalities=modalities, position_fusion="gated"))
    inputs = torch.randn(3, 11, 64, requires_grad=True)
    modality_ids = torch.randint(0, num_modalities, (3, 11))
    new = select_per_modality(fusion.gates, inputs, modality_ids)
    old = per_modality_by_boolean_index(fusion.gates, inputs, modality_ids)
    torch.testing.assert_close(new, old, atol=1e-6, rtol=1e-6)
    new_grads = torch.autograd.grad(new.square().sum(), [inputs, *fusion.parameters()])
    old_grads = torch.autograd.grad(old.square().sum(), [inputs, *fusion.parameters()])
    for a, b in zip(new_grads, old_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_modalities", [1, 3])
def test_per_modality_normalisation_matches_its_formula(num_modalities):
    """gamma_m * LN(c) + beta_m + e_m, the modality embedding folded into the shift: forward and gradients equal the
    formula with each term gathered by advanced indexing."""
    torch.manual_seed(0)
    modalities = dict(list(tiny_config().modalities.items())[:num_modalities])
    embeddings = build_model(modalities=modalities).embeddings
    for parameter in (embeddings.content_norm_weight, embeddings.content_norm_bias):
        torch.nn.init.normal_(parameter)
    content = torch.randn(3, 11, 32, requires_grad=True)
    modality_ids = torch.randint(0, num_modalities, (3, 11))
    weights = [content, embeddings.content_norm_weight, embeddings.content_norm_bias, embeddings.modality_embedding.weight]
    new = embeddings.normalise_per_modality(content, modality_ids)
    old = (torch.nn.functional.layer_norm(content, (32,), eps=embeddings.layer_norm_eps)
           * embeddings.content_norm_weight[modality_ids] + embeddings.content_norm_bias[modality_ids]
           + embeddings.modality_embedding.weight[modality_ids])
    torch.testing.assert_close(new, old, atol=1e-6, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(new.square().sum(), weights), torch.autograd.grad(old.square().sum(), weights)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("unit_scale", [True, False])
@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_an_encoding_of_the_position_alone_is_normalised_per_row_then_gathered(encoding, unit_scale, monkeypatch):
    """`sinusoidal` and `learned` compute (and RMS-normalise) each row of their table once, then gather it per token:
    outputs and gradients equal the per-token computation. A table with more rows than the batch has tokens (positions
    far past them, or a large `learned` table) takes the per-token path."""
    model = build_model(PosAttnForSequenceClassification, absolute_position_encoding=encoding,
                        unit_scale_embeddings=unit_scale, max_position_embeddings=100).train()
    embeddings = model.posattn.embeddings
    inputs = {**batch_of(random_samples()), "labels": torch.tensor([0, 2, 1])}  # 3 x 109 tokens, positions up to 79
    batches = [inputs] + ([{**inputs, "position_ids": inputs["position_ids"] + 1000}] if encoding == "sinusoidal" else [])
    normalised = []
    if unit_scale:
        embeddings.encoding_norm.register_forward_pre_hook(lambda module, args: normalised.append(args[0].shape[:-1]))

    def run(batch):
        model.zero_grad()
        output = model(**batch)
        output.loss.backward()
        return output.logits, [parameter.grad.clone() for parameter in model.parameters() if parameter.grad is not None]

    per_row = [run(batch) for batch in batches]
    monkeypatch.setattr(type(embeddings.position_encoding), "rows", lambda self, content, positions: None)
    per_token = [run(batch) for batch in batches]
    for (logits, grads), (expected_logits, expected_grads) in zip(per_row, per_token):
        torch.testing.assert_close(logits, expected_logits, atol=1e-6, rtol=1e-5)
        for grad, expected in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)
    if unit_scale:
        table = (80,) if encoding == "sinusoidal" else (3 * 100,)  # learned: one table of 100 rows per modality
        assert normalised[: len(batches)] == [table, (3, 109)][: len(batches)]
        assert normalised[len(batches):] == [(3, 109)] * len(batches)


@pytest.mark.parametrize("stem", [None, {"type": "conv", "stride": 2}, "tokens"])
def test_one_unpadded_modality_embeds_without_masking(stem):
    """With one modality and no padding, every token is the modality's own: its stem (or token table) runs without the
    `where` masks, and the embeddings equal the masked computation's."""
    import dataclasses

    from torch.profiler import profile

    if stem == "tokens":
        modalities = {"text": {"vocab_size": 37, "sampling_rate": None}}
        inputs = batch_of([{"text": np.arange(8) % 37}, {"text": np.arange(8, 16)}], modalities)
    else:
        modalities = {"audio": {"input_dim": 4, "sampling_rate": 100.0, **({"stem": stem} if stem else {})}}
        rng = np.random.default_rng(0)
        inputs = batch_of([{"audio": rng.normal(size=(16, 4)).astype(np.float32)} for _ in range(2)], modalities)
    model = build_model(modalities=modalities)
    positions = model.token_positions(inputs.get("input_values"), inputs.get("input_ids"), inputs["modality_ids"],
                                      None, None, inputs["attention_mask"])
    assert positions.padded is False
    values = inputs.get("input_values")
    with torch.no_grad(), profile() as trace:
        fast = model.embeddings(values, inputs.get("input_ids"), positions)
    masked = model.embeddings(values, inputs.get("input_ids"), dataclasses.replace(positions, padded=None))
    torch.testing.assert_close(fast, masked, atol=1e-6, rtol=1e-6)
    if stem in (None, "tokens"):  # the conv stem masks its frames itself, from the padding mask
        assert not [event.key for event in trace.key_averages() if event.key == "aten::where"]


@torch.no_grad()
def test_forward_has_no_boolean_indexing(monkeypatch):
    """Token embeddings and the gated fusion never index with a boolean mask: data-dependent shapes break graphs."""
    model = build_model(position_fusion="gated", absolute_position_encoding="learned", max_position_embeddings=128)
    inputs = batch_of(random_samples())
    expected = model(**inputs).last_hidden_state
    original = torch.Tensor.__getitem__

    def no_bool_index(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        assert not any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts), "boolean indexing"
        return original(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", no_bool_index)
    torch.testing.assert_close(model(**inputs).last_hidden_state, expected, atol=0, rtol=0)


@torch.no_grad()
def test_learned_table_bound_is_checked_without_position_ids():
    """Derived positions past the `learned` table are refused by the entry validation too (not by the encoding)."""
    model = build_model(absolute_position_encoding="learned", max_position_embeddings=16)
    inputs = batch_of(random_samples(lengths=((20, 4, 3),)))
    del inputs["position_ids"]
    with pytest.raises(ValueError, match="Modality 'audio': 20 tokens exceed the `learned` position table"):
        model(**inputs)


# the shipped recipes' conv stem (unfold and two GEMMs in frame order) and the patch stem (a view and a GEMM)
CONV_STEMMED = {
    "video": {"input_dim": 6, "sampling_rate": 25.0, "stem": {"type": "conv", "kernel_size": 8, "filters": 4, "stride": 2}},
    "audio": {"input_dim": 4, "sampling_rate": 100.0, "stem": {"type": "patch", "patch_size": [2, 2], "stride": 2}},
    "text": {"vocab_size": 37, "sampling_rate": None},
}
KERNEL_FRIENDLY = [
    dict(absolute_position_encoding="sinusoidal", relative_position_encoding="none"),
    dict(absolute_position_encoding="multiscale", relative_position_encoding="time_rope", position_fusion="gated"),
]


@pytest.mark.parametrize(
    "encoding",
    [*KERNEL_FRIENDLY, dict(modalities=CONV_STEMMED, absolute_position_encoding="none", relative_position_encoding="time_rope")],
    ids=["sinusoidal", "multiscale", "conv-stems"],
)
def test_compile_has_no_graph_breaks(encoding):
    """The classification model traces as one graph, in inference and in training with labels (the value checks that
    sync with the host are skipped while tracing; `validate_inputs` runs them eagerly)."""
    from modeling_posattn import PosAttnForSequenceClassification

    model = build_model(PosAttnForSequenceClassification, **encoding)
    inputs = batch_of(random_samples(), model.config.modalities)
    torch._dynamo.reset()
    with torch.no_grad():
        assert torch._dynamo.explain(model)(**inputs).graph_break_count == 0
    model.train()
    inputs["labels"] = torch.tensor([0, 1, 2])
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(lambda **batch: model(**batch).loss.backward())(**inputs)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow
def test_compiled_training_matches_eager_and_does_not_recompile_per_length():
    """`torch.compile(fullgraph=True, dynamic=True)`: one graph for every batch size and length, same loss and
    gradients as eager (aot_eager backend: the autograd graph without the slow C++ build of inductor)."""
    from torch._dynamo.utils import counters

    from modeling_posattn import PosAttnForSequenceClassification

    model = build_model(PosAttnForSequenceClassification, **KERNEL_FRIENDLY[1]).train()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    for lengths in (((40, 10, 5), (17, 3, 0), (80, 20, 9)), ((5, 2, 1),) * 4):
        inputs = batch_of(random_samples(lengths=lengths))
        inputs["labels"] = torch.zeros(len(lengths), dtype=torch.long)
        model.validate_inputs(**inputs)
        grads = []
        for run in (compiled, model):
            model.zero_grad()
            loss = run(**inputs).loss
            loss.backward()
            grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-6, rtol=1e-6)
        for a, b in zip(grads[0][1], grads[1][1]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.slow
def test_frozen_inference_compile_matches_eager():
    """inductor's `freezing` (weights as constants: `scripts/benchmark_compile.py`'s "inference, frozen" rows) compiles
    the classification model and gives eager's logits."""
    from modeling_posattn import PosAttnForSequenceClassification

    model = build_model(PosAttnForSequenceClassification, **KERNEL_FRIENDLY[1])
    inputs = batch_of(random_samples())
    torch._dynamo.reset()
    frozen = torch.compile(model, fullgraph=True, options={"freezing": True})
    with torch.no_grad():
        torch.testing.assert_close(frozen(**inputs).logits, model(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_validate_inputs_raises_the_forward_errors():
    from modeling_posattn import PosAttnForSequenceClassification

    model = build_model(PosAttnForSequenceClassification)
    inputs = batch_of(random_samples())
    model.validate_inputs(**inputs, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        model.validate_inputs(**inputs, labels=torch.tensor([0, 1, 7]))
    inputs["input_values"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="Modality '.*NaN or Inf"):
        model.validate_inputs(**inputs)


EXPORTED = [
    ("PosAttnModel", dict(absolute_position_encoding="sinusoidal")),
    ("PosAttnModel", dict(absolute_position_encoding="none", relative_position_encoding="relative_bias")),
    ("PosAttnForSequenceClassification", KERNEL_FRIENDLY[1]),
    ("PosAttnModel", dict(modalities=CONV_STEMMED, absolute_position_encoding="none", relative_position_encoding="time_rope")),
]


def exported_and_batches(class_name, encoding):
    """The model, its `torch.export` with a dynamic batch and length, the export batch and a batch of other sizes."""
    import modeling_posattn

    model = build_model(getattr(modeling_posattn, class_name), **encoding)
    modalities = model.config.modalities
    inputs = batch_of(random_samples(), modalities)
    other = batch_of(random_samples(seed=1, lengths=((30, 8, 4), (12, 2, 0), (70, 20, 9), (3, 3, 3))), modalities)
    batch, length = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("length", min=2, max=65536)
    shapes = {name: {0: batch, 1: length} for name in inputs}
    return model, shapes, inputs, other


@pytest.mark.parametrize("class_name, encoding", EXPORTED, ids=["sinusoidal", "relative_bias", "classification", "conv-stems"])
@torch.no_grad()
def test_torch_export_matches_eager(class_name, encoding):
    model, shapes, inputs, other = exported_and_batches(class_name, encoding)
    program = torch.export.export(model, (), kwargs=dict(inputs), dynamic_shapes=shapes, strict=False)
    for batch in (inputs, other):
        torch.testing.assert_close(program.module()(**batch)[0], model(**batch)[0], atol=1e-6, rtol=0)


ONNX_EXPORTED = [*EXPORTED, ("PosAttnModel", dict(EXPORTED[1][1], attn_implementation="eager"))]


@pytest.mark.parametrize(
    "class_name, encoding", ONNX_EXPORTED, ids=["sinusoidal", "relative_bias", "classification", "conv-stems", "relative_bias-eager"]
)
@torch.no_grad()
def test_onnx_export_matches_eager(class_name, encoding):
    """`torch.onnx.export(dynamo=True)` run by onnxruntime, with a dynamic batch and length (dev extra: onnx,
    onnxscript, onnxruntime); relative_bias under sdpa (a float bias) and eager attention."""
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model, shapes, inputs, other = exported_and_batches(class_name, encoding)
    program = torch.onnx.export(model, (), kwargs=dict(inputs), dynamo=True, dynamic_shapes=shapes, verbose=False)
    for batch in (inputs, other):
        torch.testing.assert_close(program(**batch)[0], model(**batch)[0], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Data path: numpy-formatted rows, length grouping
# ---------------------------------------------------------------------------------------------------------------------


def raw_split(modalities, lengths, seed=0):
    """A raw `datasets.Dataset` (one column per modality, nested lists as a loader writes them) with labels."""
    import datasets

    rows = random_samples(seed, lengths)
    columns = {name: [row[name].tolist() if name in row else None for row in rows] for name in modalities}
    return datasets.Dataset.from_dict({**columns, "labels": [i % 3 for i in range(len(rows))]})


def trainer_for(modalities, split, **arguments):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from modeling_posattn import PosAttnForSequenceClassification, PosAttnProcessor
    from modeling_posattn.toolkit.builders import encode_splits

    processor = PosAttnProcessor(modalities=modalities)
    encoded = encode_splits({"train": split}, processor)["train"]
    model = build_model(PosAttnForSequenceClassification, modalities=modalities)
    args = TrainingArguments(
        "unused", per_device_train_batch_size=2, report_to=[], use_cpu=True, max_steps=1, save_strategy="no", **arguments
    )
    return Trainer(model=model, args=args, train_dataset=encoded, processing_class=processor,
                   data_collator=DataCollatorWithPadding(processor)), encoded, processor


def test_encoded_splits_are_numpy_rows_that_the_trainer_keeps():
    """Rows are arrays in their stored dtypes (no nested lists, float64 timestamps), the format survives Trainer's
    column removal, and the collated batch equals the one padded from the processor's own rows."""
    from modeling_posattn.input_checks_posattn import PACKED_KEYS

    lengths = ((40, 10, 5), (17, 3, 0), (80, 20, 9), (3, 1, 1))
    trainer, encoded, processor = trainer_for(tiny_config().modalities, raw_split(tiny_config().modalities, lengths))
    row = encoded[0]
    assert isinstance(row["input_values"], np.ndarray) and row["input_values"].shape == (55, 6)
    assert row["timestamps"].dtype == np.float64 and row["length"] == 55
    loader = trainer.get_train_dataloader()
    assert loader.dataset.format["type"] == "numpy" and "length" not in loader.dataset.column_names
    rows = loader.dataset.__getitems__([0, 1, 2, 3])
    expected = processor([{k: v for k, v in s.items()} for s in random_samples(0, lengths)], return_tensors="pt")
    batch = processor.pad(rows)
    for key in PACKED_KEYS:
        torch.testing.assert_close(batch[key], expected[key].to(batch[key].dtype), atol=0, rtol=0, msg=key)


@pytest.mark.parametrize("modalities", ["all", "token-only"])
def test_group_by_length_measures_packed_rows(modalities):
    """`train_sampling_strategy="group_by_length"` builds transformers' LengthGroupedSampler on the packed lengths,
    also for a dataset without `input_values` (token modalities only), and a training step runs with it."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    specs = tiny_config().modalities if modalities == "all" else {"text": tiny_config().modalities["text"]}
    lengths = ((40, 10, 5), (17, 3, 2), (80, 20, 9), (3, 1, 1), (6, 6, 30), (1, 1, 12))
    split = raw_split(specs, lengths)
    expected = [sum(n for n, name in zip(row, ("audio", "video", "text")) if name in specs) for row in lengths]
    for remove_unused_columns in (True, False):
        trainer, encoded, _ = trainer_for(
            specs, split, train_sampling_strategy="group_by_length", remove_unused_columns=remove_unused_columns
        )
        sampler = trainer._get_train_sampler(trainer._remove_unused_columns(encoded))
        assert isinstance(sampler, LengthGroupedSampler)
        assert [int(n) for n in sampler.lengths] == expected
    assert trainer.train().global_step == 1


def test_group_by_length_with_augmentation_measures_augmented_rows():
    """With on-the-fly augmentation (`augmented_split`, a `with_transform` split, which datasets reads whole even for
    one column) the sampler measures each row's packed length through the transform, once per training (about a
    second for AV-digits' 2700 rows); a training step runs."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from modeling_posattn.toolkit.augmentation import TimeSeriesAugmentation
    from modeling_posattn.toolkit.builders import augmented_split

    specs = tiny_config().modalities
    lengths = ((40, 10, 5), (17, 3, 2), (80, 20, 9), (3, 1, 1), (6, 6, 30), (1, 1, 12))
    split = raw_split(specs, lengths)
    trainer, encoded, processor = trainer_for(specs, split, train_sampling_strategy="group_by_length",
                                              remove_unused_columns=False)
    augmented = augmented_split(split, processor, TimeSeriesAugmentation(jitter=0.5, window_slice=0.8), seed=0)
    trainer.train_dataset = augmented
    sampler = trainer._get_train_sampler(augmented)
    assert isinstance(sampler, LengthGroupedSampler)
    assert [int(n) for n in sampler.lengths] == [sum(row) for row in lengths]  # a window slice is resampled back
    assert trainer.train().global_step == 1


@pytest.mark.parametrize("given", ["everything", "no positions or times", "no mask", "nothing optional"])
def test_the_entry_checks_sync_with_the_device_once(given, monkeypatch):
    """One `tolist` for every check and fact of a batch, and no `.item()` besides (`one_hot`'s range check made two
    more in the default positions and times)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from modeling_posattn.validation_posattn import resolve_token_positions

    class CountItems(TorchDispatchMode):
        items = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.items += func is torch.ops.aten._local_scalar_dense.default
            return func(*args, **(kwargs or {}))

    model = build_model(absolute_position_encoding="learned", max_position_embeddings=256)
    inputs = batch_of(random_samples())
    dropped = {"everything": (), "no positions or times": ("position_ids", "timestamps"), "no mask": ("attention_mask",),
               "nothing optional": ("position_ids", "timestamps", "attention_mask")}[given]
    inputs = {key: value for key, value in inputs.items() if key not in dropped}
    syncs, original_tolist = [], torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda tensor: syncs.append(1) or original_tolist(tensor))
    with CountItems() as counted:
        resolve_token_positions(model.config, inputs.get("input_values"), inputs.get("input_ids"),
                                inputs["modality_ids"], inputs.get("position_ids"), inputs.get("timestamps"),
                                inputs.get("attention_mask"))
    assert (len(syncs), counted.items) == (1, 0)

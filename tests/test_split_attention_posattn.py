"""Time-split attention (`modeling_posattn/split_attention_posattn.py`): exact against the dense bias in values and in
every gradient, on unsorted multimodal, padded and tied timestamps, with each kind of key range exercised; never an
L x L tensor; selected only where it runs. Behaviour only: its speed is measured by scripts/benchmark_speed.py."""

import collections

import numpy as np
import pytest
import torch
from conftest import assert_same_results, batch_of, build_model, outputs_and_gradients, random_samples

from modeling_posattn import split_attention_posattn
from modeling_posattn.bias_posattn import ALiBiPositionBias, RelativeTimeBias


# a bucket range short enough that these small samples (at most 1 s) have keys far before and after their blocks
SHORT_BUCKETS = dict(relative_attention_num_buckets=8, relative_attention_max_distance=3, time_units_per_second=10)
SETTINGS = {"alibi": {}, "relative_bias": SHORT_BUCKETS}


def split_blocks(monkeypatch, rows: int = 7) -> collections.Counter:
    """Time-split attention with `rows` queries per block; counts the key ranges it attends."""
    for encoding in (ALiBiPositionBias, RelativeTimeBias):
        monkeypatch.setattr(encoding, "split_query_rows", rows)
        monkeypatch.setattr(encoding, "split_query_rows_inference", rows)
    sides = collections.Counter()
    original = split_attention_posattn.key_ranges

    def counted(*args):
        for key_range in original(*args):
            sides[key_range.side] += 1
            yield key_range

    monkeypatch.setattr(split_attention_posattn, "key_ranges", counted)
    return sides


def dense_and_split(name: str, split_from: int = 1, **overrides):
    """Two models with the same weights (a random bias table, so that every bucket differs), one on the dense bias, one
    time-split from `split_from` tokens on."""
    settings = dict(dict(relative_position_encoding=name, attn_implementation="sdpa", **SETTINGS[name]), **overrides)
    dense = build_model(**settings, time_split_min_length=None)
    split = build_model(**settings, time_split_min_length=split_from)
    if name == "relative_bias":
        with torch.no_grad():
            dense.relative_position_encoding.relative_attention_bias.weight.normal_()
    split.load_state_dict(dense.state_dict())
    return dense, split


@pytest.mark.parametrize("rows", [1, 7, 64])
@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
def test_time_split_matches_the_dense_bias(name, rows, monkeypatch):
    """Padded samples of three modalities (their tokens not in time order): the same outputs on real tokens and the
    same gradients of every parameter, the bias table's included, whatever the block size."""
    sides = split_blocks(monkeypatch, rows=rows)
    dense, split = dense_and_split(name)
    inputs = batch_of(random_samples())
    dense_results = outputs_and_gradients(dense, inputs)
    assert not sides
    split_results = outputs_and_gradients(split, inputs)
    assert sides["before"] and sides["near"] and sides["after"], sides
    assert_same_results(dense_results, split_results)
    if name == "relative_bias":
        assert "relative_position_encoding.relative_attention_bias.weight" in split_results[1]


@pytest.mark.parametrize("seed", range(12))
def test_time_split_matches_the_dense_bias_on_random_layouts(seed, monkeypatch):
    """Random batches (samples of 1 to 90 tokens), clocks (offset, coarse ties, shuffled timestamps), bucket settings,
    block sizes, pooling and gradient checkpointing: the same outputs and gradients as the dense bias."""
    rng = np.random.default_rng(seed)
    name = ["alibi", "relative_bias"][seed % 2]
    split_blocks(monkeypatch, rows=int(rng.choice([1, 2, 3, 7, 16])))
    buckets = int(rng.choice([4, 8, 32]))
    overrides = dict(pooling=str(rng.choice(["mean", "cls"])), time_units_per_second=float(rng.choice([1.0, 10.0, 25.0])),
                     relative_attention_num_buckets=buckets, relative_attention_max_distance=buckets // 4 + int(rng.integers(1, 40)))
    dense, split = dense_and_split(name, **overrides)
    if seed % 3 == 0:
        dense.activation_checkpointing_enable(), split.activation_checkpointing_enable()
    lengths = [tuple(int(rng.integers(0, 30)) for _ in range(3)) for _ in range(3)]
    lengths = [length if sum(length) else (1, 0, 0) for length in lengths]
    inputs = batch_of(random_samples(seed, lengths))
    shape = inputs["attention_mask"].shape
    clock = rng.choice(["default", "offset", "ties", "shuffled"])
    if clock != "default":
        times = torch.as_tensor(rng.uniform(0, 3, size=shape), dtype=torch.float64)
        if clock == "offset":
            times = times + 1e5
        elif clock == "ties":
            times = (times * 3).round() / 3
        inputs["timestamps"] = times
    assert_same_results(outputs_and_gradients(dense, inputs), outputs_and_gradients(split, inputs))


@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
def test_time_split_with_tied_times_and_an_unpadded_ordered_batch(name, monkeypatch):
    """Timestamps with many ties across block boundaries (coarse 0.1 s clock), and one modality already in time order
    without padding (no reordering at all)."""
    split_blocks(monkeypatch, rows=5)
    dense, split = dense_and_split(name)
    samples = random_samples(lengths=((60, 0, 0), (60, 0, 0)))
    tied = batch_of(samples)
    tied["timestamps"] = (torch.arange(tied["attention_mask"].shape[1]) // 7 * 0.1).expand(2, -1).clone()
    for inputs in (tied, batch_of(samples)):
        assert_same_results(
            outputs_and_gradients(dense, inputs), outputs_and_gradients(split, inputs)
        )
        dense.zero_grad(), split.zero_grad()


def test_time_split_far_keys_share_the_end_buckets(monkeypatch):
    """Every key outside a block's near range has, for every query of the block, the bucket of its side's far end,
    including distances on a rounding tie (20 ms at 25 units per second, far from the clock's origin)."""
    from modeling_posattn.modeling_posattn import TokenPositions

    split_blocks(monkeypatch, rows=16)
    config = build_model(relative_position_encoding="relative_bias").config
    encoding = RelativeTimeBias(config)
    times = torch.cat((torch.arange(300) * 0.02 + 1000.0, torch.arange(100) * 0.06 + 1000.01)).float().unsqueeze(0)
    mask = torch.ones_like(times, dtype=torch.bool)
    positions = TokenPositions(times.long(), times, times.long(), mask, times.long(), padded=False)
    blocked = split_attention_posattn.query_blocked_bias(encoding, positions, torch.float32, config)
    (sample,) = split_attention_posattn.time_split_bias(blocked, config).samples
    buckets = encoding.bucket(sample.times[None, :] - sample.times[:, None])
    far_before, far_after = encoding.bucket_table[0], encoding.bucket_table[-1]
    for start, end, near_start, near_end in sample.blocks:
        assert (buckets[start:end, :near_start] == far_before).all()
        assert (buckets[start:end, near_end:] == far_after).all()
        assert near_start <= start and end <= near_end
    assert any(near_start > 0 for _, _, near_start, _ in sample.blocks)


@torch.no_grad()
@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
def test_time_split_never_builds_a_square_bias(name, monkeypatch):
    """The flash kernel sees key-term masks `(1, heads, 1, keys)` and near blocks of at most `rows` query rows."""
    split_blocks(monkeypatch, rows=8)
    masks = []
    original = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    def spy(query, key, value, attn_mask=None, **kwargs):
        masks.append(None if attn_mask is None else tuple(attn_mask.shape))
        return original(query, key, value, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", spy)
    _, split = dense_and_split(name)
    inputs = batch_of(random_samples())
    split(**inputs)
    assert masks and all(mask is None or mask[2] == 1 or mask[2] <= 8 for mask in masks), masks


def test_time_split_gradient_penalty_matches_the_dense_bias(monkeypatch):
    """`create_graph=True` through time-split attention: a penalty on the input gradient differentiates like the
    dense path's, also into the bias table."""
    split_blocks(monkeypatch, rows=6)
    dense, split = dense_and_split("relative_bias")
    inputs = batch_of(random_samples(lengths=((30, 6, 4), (12, 3, 0))))
    mask = inputs["attention_mask"].bool()
    results = []
    for model in (dense, split):
        model.train()
        values = inputs["input_values"].clone().requires_grad_(True)
        hidden = model(**dict(inputs, input_values=values)).last_hidden_state
        (grad,) = torch.autograd.grad(hidden[mask].square().sum(), values, create_graph=True)
        grad.square().sum().backward()
        results.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert "relative_position_encoding.relative_attention_bias.weight" in results[1]
    for parameter, gradient in results[0].items():  # float32 second derivatives: dense and eager differ by 2e-5 too
        torch.testing.assert_close(results[1][parameter], gradient, atol=5e-5, rtol=1e-3, msg=parameter)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
def test_time_split_under_autocast_is_as_close_to_float32_as_the_dense_bias(name, dtype, monkeypatch):
    """Under CPU autocast (q, k and v in half precision) the split runs too, in float32: its outputs and every gradient
    are as close to the float32 model's as the dense bias's under the same autocast (at most 3x its error, plus a
    little of the half precision's rounding)."""
    sides = split_blocks(monkeypatch)
    dense, split = dense_and_split(name)
    inputs = batch_of(random_samples())

    def step(model, autocast: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            output, grads = outputs_and_gradients(model, inputs)
        return output.detach().float(), {parameter: grad.clone() for parameter, grad in grads.items()}

    (expected, expected_grads), dense_results = step(dense, False), step(dense, True)
    assert not sides
    split_results = step(split, True)
    assert sides["before"] and sides["near"] and sides["after"], sides
    rounding = 2e-3 if dtype == torch.bfloat16 else 2e-4
    largest = max(gradient.abs().max() for gradient in expected_grads.values())
    for parameter, reference in [("output", expected), *expected_grads.items()]:
        scale = max(reference.abs().max(), 1e-3 * largest)
        dense_error, split_error = (
            ((results[0] if parameter == "output" else results[1][parameter]) - reference).abs().max() / scale
            for results in (dense_results, split_results)
        )
        assert split_error <= 3 * dense_error + rounding, (parameter, split_error.item(), dense_error.item())


@pytest.mark.parametrize("half", ["bfloat16 autocast", "bfloat16 model"])
@pytest.mark.parametrize("name", ["alibi", "relative_bias"])
def test_time_split_attends_half_precision_in_float32(name, half, monkeypatch):
    """Half-precision q, k, v (autocast, or a model cast to bfloat16) reach time-split attention's kernels in float32,
    with a float32 bias table: the flash kernel rounds each key range's output to its inputs' dtype, and the merge and
    every backward need them exact (in bfloat16 the table gradient's rows, exactly 0, summed to 1e-2 of its largest
    entry). The gradients come back in the parameters' own dtype."""
    split_blocks(monkeypatch)
    seen = []
    original = split_attention_posattn.TimeSplitAttention.apply
    monkeypatch.setattr(split_attention_posattn.TimeSplitAttention, "apply",
                        lambda *args: seen.extend(t.dtype for t in args[:4] if t is not None) or original(*args))
    _, model = dense_and_split(name)
    inputs = batch_of(random_samples())
    if half == "bfloat16 model":
        model.to(torch.bfloat16)
        inputs["input_values"] = inputs["input_values"].to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half == "bfloat16 autocast"):
        hidden = model.train()(**inputs).last_hidden_state
    hidden.float().sum().backward()
    assert seen and set(seen) == {torch.float32}, seen  # q, k, v and the table of every sample and layer
    parameters = dict(model.named_parameters())
    key = "layers.0.self_attn.k_proj.weight"
    assert parameters[key].grad.dtype == parameters[key].dtype and parameters[key].grad.isfinite().all()
    if name == "relative_bias":
        table = parameters["relative_position_encoding.relative_attention_bias.weight"]
        assert table.grad.dtype == table.dtype and table.grad.abs().sum() > 0


@pytest.mark.parametrize("half", ["bfloat16 autocast", "bfloat16 model"])
def test_torch_func_grad_runs_where_the_split_would(half, monkeypatch):
    """`torch.func.grad` (per-sample gradients, say) over a model that would time-split in half precision: the split's
    custom Function has no vmap rule, so no split is planned while a transform runs. Under autocast the gradients
    agree with autograd's (which takes the split) to bfloat16's rounding; a bfloat16 model's, computed in bfloat16 on
    one path and in float32 on the other, are only checked to be there."""
    planned = []
    original = split_attention_posattn.time_split_bias
    monkeypatch.setattr(split_attention_posattn, "time_split_bias", lambda *args: planned.append(1) or original(*args))
    _, model = dense_and_split("alibi")
    inputs = batch_of(random_samples())
    if half == "bfloat16 model":
        model.to(torch.bfloat16)
        inputs["input_values"] = inputs["input_values"].bfloat16()
    model.train()
    parameters = {name: parameter.detach() for name, parameter in model.named_parameters()}

    def loss(parameters):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half == "bfloat16 autocast"):
            hidden = torch.func.functional_call(model, parameters, kwargs=inputs).last_hidden_state
        return hidden.float().square().mean()

    grads = torch.func.grad(loss)(parameters)
    assert planned == []
    loss(dict(model.named_parameters())).backward()
    assert planned == [1]
    largest = max(parameter.grad.float().abs().max() for parameter in model.parameters())
    for name, parameter in model.named_parameters():
        assert grads[name].dtype == parameter.dtype and grads[name].isfinite().all(), name
        if half == "bfloat16 autocast":  # to bfloat16's rounding, at each gradient's scale
            bound = 0.05 * parameter.grad.float().abs().max() + 0.01 * largest
            assert (grads[name].float() - parameter.grad.float()).abs().max() <= bound, name


@pytest.mark.parametrize("setting", ["eager", "below the length", "attention dropout"])
def test_time_split_is_planned_only_where_it_runs(setting, monkeypatch):
    """Eager attention, short sequences and attention dropout in training never plan a split: they keep the dense
    bias, with its result."""
    sides = split_blocks(monkeypatch)
    planned = []
    original = split_attention_posattn.time_split_bias
    monkeypatch.setattr(split_attention_posattn, "time_split_bias", lambda *args: planned.append(1) or original(*args))
    implementation = "eager" if setting == "eager" else "sdpa"
    split_from = 10**6 if setting == "below the length" else 1
    dropout = 0.1 if setting == "attention dropout" else 0.0
    dense, split = dense_and_split("alibi", split_from, attn_implementation=implementation, attention_dropout=dropout)
    inputs = batch_of(random_samples())
    mask = inputs["attention_mask"].bool()
    if setting == "attention dropout":
        split.train()(**inputs).last_hidden_state.sum().backward()
    else:
        with torch.no_grad():
            expected, output = (model(**inputs).last_hidden_state[mask] for model in (dense, split))
        torch.testing.assert_close(output, expected, atol=0, rtol=0)
    assert not planned and not sides


def test_time_split_keeps_per_pair_data_within_the_dense_bias_budget(monkeypatch):
    """A training step keeps each block's near-key data for its layers within `dense_bias_max_bytes` (none of it at a
    zero budget, all of it at a large one), with the same results; inference keeps none."""
    split_blocks(monkeypatch, rows=7)
    plans = []
    original = split_attention_posattn.time_split_bias
    monkeypatch.setattr(split_attention_posattn, "time_split_bias", lambda *a: plans.append(original(*a)) or plans[-1])
    inputs = batch_of(random_samples())

    def kept_bytes(plan):
        kept = [t for sample in plan.samples for t in (*sample.pair_keys.values(), *sample.near_biases.values())]
        return sum(tensor.numel() * tensor.element_size() for tensor in kept)

    results, kept = [], []
    for budget in (0, 20_000, 2**30):
        _, split = dense_and_split("relative_bias", dense_bias_max_bytes=budget)
        results.append(outputs_and_gradients(split, inputs))
        kept.append(kept_bytes(plans[-1]))
    assert kept[0] == 0 and 0 < kept[1] <= 20_000 < kept[2]
    for other in results[1:]:
        assert_same_results(results[0], other)
    with torch.no_grad():
        split(**inputs)
    assert kept_bytes(plans[-1]) == 0

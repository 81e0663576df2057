"""Per-modality maps as one grouped GEMM over the tokens in modality order (`grouped_posattn.py`): the same values and
gradients as the batched formula, wherever it runs, and the batched formula wherever it cannot."""

import pytest
import torch
from torch import nn

import modeling_posattn.embeddings_posattn as embeddings_module
from modeling_posattn.grouped_posattn import (
    ModalityOrder,
    bias_inputs,
    grouped_linear,
    grouped_path_allowed,
    stacked_affine,
)
from modeling_posattn.positional_encodings import select_per_modality

from conftest import MODALITIES, assert_same_results, batch_of, build_model, outputs_and_gradients, random_samples


@pytest.fixture
def grouped_calls(monkeypatch):
    """How many times `grouped_mm` ran."""
    calls = []
    original = nn.functional.grouped_mm

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(nn.functional, "grouped_mm", counting)
    return calls


def test_modality_order_is_stable_and_restores_the_batch():
    modality_ids = torch.tensor([[2, 0, 1, 0], [0, 0, 2, 2]])
    order = ModalityOrder.of(modality_ids, 4)  # modality 3 has no token
    assert order.order.tolist() == [1, 3, 4, 5, 2, 0, 6, 7]  # sequence order within each modality
    assert order.sorted_ids.tolist() == [0, 0, 0, 0, 1, 2, 2, 2]
    assert order.ends.tolist() == [4, 5, 8, 8] and order.ends.dtype == torch.int32
    values = torch.randn(2, 4, 3)
    assert torch.equal(order.sort(values), values.flatten(0, 1)[order.order])
    assert torch.equal(order.unsort(order.sort(values), modality_ids.shape), values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_affine_map_is_each_modalitys_own_linear(dtype):
    """`stacked_affine` + `bias_inputs` + `grouped_linear` = `linears[m](x)` row by row, a modality with no map gives
    exact zeros, and every gradient (inputs, weights, biases) is the per-row formula's."""
    torch.manual_seed(0)
    linears = [nn.Linear(5, 8).to(dtype), None, nn.Linear(3, 8).to(dtype)]
    modality_ids = torch.tensor([[2, 0, 1, 0, 2], [1, 0, 2, 2, 0]])
    order = ModalityOrder.of(modality_ids, 3)
    inputs = torch.randn(2, 5, 5, dtype=dtype, requires_grad=True)
    weight = stacked_affine([lin and lin.weight for lin in linears], [lin and lin.bias for lin in linears], 5, 8, inputs)
    rows = order.sort(torch.cat((inputs, bias_inputs(inputs, 5)), dim=-1))
    columns = torch.tensor([5, 0, 3]).take(order.sorted_ids)
    keep = torch.arange(8) < columns[:, None]
    keep |= (torch.arange(8) == 5) & (columns[:, None] > 0)
    output = order.unsort(grouped_linear(torch.where(keep, rows, 0.0), weight, order), modality_ids.shape)
    expected = torch.stack([
        torch.stack([linears[m](inputs[b, t, : linears[m].in_features]) if linears[m] else torch.zeros(8, dtype=dtype)
                     for t, m in enumerate(row.tolist())])
        for b, row in enumerate(modality_ids)
    ])
    tolerance = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(output, expected, **tolerance)
    assert (output[modality_ids == 1] == 0).all()
    cotangent = torch.randn(output.shape, dtype=dtype)
    parameters = [inputs, linears[0].weight, linears[0].bias, linears[2].weight, linears[2].bias]
    got = torch.autograd.grad(output, parameters, cotangent)
    want = torch.autograd.grad(expected, parameters, cotangent)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_select_per_modality_grouped_matches_the_batched_formula(num_modalities, grouped_calls):
    torch.manual_seed(0)
    linears = nn.ModuleList(nn.Linear(16, 8) for _ in range(num_modalities))
    inputs = torch.randn(3, 11, 16, requires_grad=True)
    modality_ids = torch.randint(0, num_modalities - 1, (3, 11))  # the last modality has no token here
    batched = select_per_modality(linears, inputs, modality_ids)
    grouped = select_per_modality(linears, inputs, modality_ids, ModalityOrder.of(modality_ids, num_modalities))
    assert len(grouped_calls) == 1
    torch.testing.assert_close(grouped, batched, atol=1e-6, rtol=1e-6)
    cotangent = torch.randn(batched.shape)
    parameters = [inputs, *linears.parameters()]
    for a, b in zip(torch.autograd.grad(grouped, parameters, cotangent), torch.autograd.grad(batched, parameters, cotangent)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_width_grouped_mm_cannot_take_uses_the_batched_formula(grouped_calls):
    linears = nn.ModuleList(nn.Linear(16, 12) for _ in range(2))  # 12 outputs: rows of 24 bytes in bfloat16
    modality_ids = torch.tensor([[0, 1, 1, 0]])
    inputs = torch.randn(1, 4, 16)
    grouped = select_per_modality(linears, inputs, modality_ids, ModalityOrder.of(modality_ids, 2))
    assert not grouped_calls
    torch.testing.assert_close(grouped, select_per_modality(linears, inputs, modality_ids))


def test_the_grouped_path_runs_only_eagerly_on_cpu_in_grouped_mms_dtypes():
    assert grouped_path_allowed(torch.zeros(1))
    assert grouped_path_allowed(torch.zeros(1, dtype=torch.bfloat16))
    assert not grouped_path_allowed(torch.zeros(1, dtype=torch.float64))  # grouped_mm has no float64
    assert not grouped_path_allowed(torch.zeros(1, device="meta"))
    seen = []
    torch.func.grad(lambda x: (seen.append(grouped_path_allowed(x)), x.sum())[1])(torch.zeros(2))
    assert seen == [False]


STEMS = {
    "linear": MODALITIES,
    # a Linear stem beside a conv stem: only the Linear one is grouped
    "linear and conv": {**MODALITIES, "video": dict(MODALITIES["video"], stem={"type": "conv", "kernel_size": 3})},
    # widths that are not a multiple of 8, one modality absent from the batch
    "strided": {**MODALITIES, "audio": dict(MODALITIES["audio"], stem={"type": "linear", "stride": 3})},
}


@pytest.mark.parametrize("stems", list(STEMS))
@pytest.mark.parametrize("fusion", ["gated", "add"])
def test_model_with_grouped_maps_matches_the_batched_formula(stems, fusion, grouped_calls, monkeypatch):
    """A training step of a three-modality model (two feature modalities of different widths, a token modality,
    padding) gives the same outputs and gradients with the grouped path as with the batched formula."""
    modalities = STEMS[stems]
    lengths = ((0, 10, 5), (0, 3, 2), (0, 20, 0)) if stems == "strided" else ((40, 10, 5), (17, 3, 0), (80, 20, 9))
    inputs = batch_of(random_samples(lengths=lengths), modalities)
    settings = dict(modalities=modalities, absolute_position_encoding="multiscale", position_fusion=fusion)
    grouped = outputs_and_gradients(build_model(**settings), inputs)
    # the stems; with the gate, its content half over the tokens and its encoding half over multiscale's rows
    assert len(grouped_calls) == 1 + 2 * (fusion == "gated")
    monkeypatch.setattr(embeddings_module, "grouped_path_allowed", lambda tensor: False)
    batched = outputs_and_gradients(build_model(**settings), inputs)
    assert len(grouped_calls) == 1 + 2 * (fusion == "gated")
    assert_same_results(batched, grouped)


def test_grouped_maps_under_autocast_match_the_batched_formula(grouped_calls, monkeypatch):
    """A training step under bfloat16 autocast: outputs and every gradient as the batched formula's, to bfloat16's
    precision (a weight cut from the graph under autocast would leave its gradient None or zero)."""
    inputs = batch_of(random_samples())
    settings = dict(absolute_position_encoding="multiscale", position_fusion="gated")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grouped_out, grouped_grads = outputs_and_gradients(build_model(**settings), inputs)
        assert len(grouped_calls) == 3  # the stems, the gate's content half, its encoding half over the rows
        monkeypatch.setattr(embeddings_module, "grouped_path_allowed", lambda tensor: False)
        batched_out, batched_grads = outputs_and_gradients(build_model(**settings), inputs)
    assert grouped_out.dtype == batched_out.dtype
    torch.testing.assert_close(grouped_out.float(), batched_out.float(), atol=3e-2, rtol=3e-2)
    assert grouped_grads.keys() == batched_grads.keys()
    largest = max(gradient.abs().max().item() for gradient in batched_grads.values())
    for name, gradient in batched_grads.items():
        scale = gradient.abs().max().item()
        # the key bias's gradient is exactly 0 (softmax ignores a score added to every key): rounding noise in both
        floor = 1e-6 * largest if name.endswith("k_proj.bias") else 1e-6
        torch.testing.assert_close(grouped_grads[name].float(), gradient.float(), atol=0.05 * scale + floor, rtol=0.05, msg=name)
        assert scale == 0 or grouped_grads[name].abs().max() > 0, name


def test_a_hidden_size_grouped_mm_cannot_take_trains_on_the_batched_formula(grouped_calls):
    """Hidden size 12: bfloat16 rows of 24 bytes, which grouped_mm refuses; stems and gate take the batched formula."""
    inputs = batch_of(random_samples())
    model = build_model(hidden_size=12, num_attention_heads=2, absolute_position_encoding="multiscale",
                        position_fusion="gated")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, gradients = outputs_and_gradients(model, inputs)
    assert not grouped_calls
    assert hidden.isfinite().all() and all(gradient.isfinite().all() for gradient in gradients.values())


def test_nothing_outside_a_tokens_own_features_reaches_the_grouped_stems(grouped_calls):
    """NaN in padding and in the columns past the narrower modality's width: the grouped stems' outputs and gradients
    are those of the clean batch."""
    inputs = batch_of(random_samples())
    mask = inputs["attention_mask"].bool()
    audio = mask & (inputs["modality_ids"] == list(MODALITIES).index("audio"))
    dirty = dict(inputs, input_values=inputs["input_values"].clone())
    dirty["input_values"][~mask] = float("nan")
    dirty["input_values"][..., 4:] = torch.where(audio[..., None], float("nan"), dirty["input_values"][..., 4:])
    clean = outputs_and_gradients(build_model(position_fusion="gated"), inputs)
    assert grouped_calls
    assert_same_results(clean, outputs_and_gradients(build_model(position_fusion="gated"), dirty))


def test_forward_mode_ad_takes_the_batched_formula(grouped_calls):
    """grouped_mm has no forward derivative: under `torch.autograd.forward_ad` the batched formula runs."""
    import torch.autograd.forward_ad as forward_ad

    inputs = batch_of(random_samples())
    model = build_model(attn_implementation="eager", position_fusion="gated")
    tangent = torch.randn(inputs["input_values"].shape)
    with forward_ad.dual_level(), torch.no_grad():
        dual = forward_ad.make_dual(inputs["input_values"], tangent)
        output = model(**dict(inputs, input_values=dual)).last_hidden_state
        assert forward_ad.unpack_dual(output).tangent.isfinite().all()
    assert not grouped_calls


def test_jit_trace_records_the_batched_formula(grouped_calls):
    inputs = batch_of(random_samples())
    model = build_model(position_fusion="gated", torchscript=True)
    keys = ["input_values", "input_ids", "modality_ids", "position_ids", "timestamps", "attention_mask"]
    with torch.no_grad():
        traced = torch.jit.trace(model, tuple(inputs[key] for key in keys), check_trace=False, strict=False)
        assert not grouped_calls
        other = batch_of(random_samples(seed=1, lengths=((30, 8, 4), (12, 2, 0))))
        traced_output = traced(*(other[key] for key in keys))
        traced_output = traced_output["last_hidden_state"] if isinstance(traced_output, dict) else traced_output[0]
        torch.testing.assert_close(traced_output, model(**other)[0])


def test_grouped_linear_under_autocast_computes_in_the_autocast_dtype_as_linear_does():
    """Autocast casts `linear`'s operands, not grouped_mm's: `grouped_linear` casts them itself."""
    modality_ids = torch.tensor([[0, 1, 1, 0]])
    order = ModalityOrder.of(modality_ids, 2)
    rows, weight = torch.randn(4, 8), torch.randn(2, 16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = grouped_linear(rows, weight, order)
        expected = torch.cat([nn.functional.linear(rows[i : i + 1], weight[m]) for i, m in enumerate([0, 0, 1, 1])])
    assert output.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(output, expected)


def test_the_batch_is_sorted_only_for_a_model_with_maps_per_modality(monkeypatch):
    """Conv stems and additive fusion have no per-modality map over every token: no sort."""
    sorts = []
    original = ModalityOrder.of.__func__
    monkeypatch.setattr(ModalityOrder, "of", classmethod(lambda cls, *args: sorts.append(1) or original(cls, *args)))
    conv = {name: dict(spec, stem={"type": "conv", "kernel_size": 3}) if "input_dim" in spec else spec
            for name, spec in MODALITIES.items()}
    inputs = batch_of(random_samples(), conv)
    build_model(modalities=conv, position_fusion="add")(**inputs)
    assert not sorts
    build_model(modalities=conv, position_fusion="gated")(**inputs)
    assert len(sorts) == 1


@pytest.mark.parametrize("grouped", [True, False])
@torch.no_grad()
def test_a_hooked_gate_is_called_as_a_module(grouped, monkeypatch):
    """The per-modality maps read the gates' weights only where every gate is a plain Linear: a hook on one gate runs
    (doubling its output is doubling its weight and bias: the reference, with plain gates, runs the grouped path or the
    batched formula)."""
    if not grouped:
        monkeypatch.setattr(embeddings_module, "grouped_path_allowed", lambda tensor: False)
    inputs = batch_of(random_samples())
    settings = dict(absolute_position_encoding="sinusoidal", position_fusion="gated")
    scaled = build_model(**settings)
    gate = scaled.embeddings.fusion.gates[1]
    gate.weight.mul_(2)
    gate.bias.mul_(2)
    hooked = build_model(**settings)
    calls = []
    hooked.embeddings.fusion.gates[1].register_forward_hook(lambda module, args, output: calls.append(1) or output * 2)
    torch.testing.assert_close(hooked(**inputs).last_hidden_state, scaled(**inputs).last_hidden_state)
    assert calls


@torch.no_grad()
def test_a_hooked_linear_stem_is_called_as_a_module(grouped_calls, monkeypatch):
    """A hook on one Linear stem runs (here cubing its output): the grouped stems leave that modality to its module, and
    the outputs are those of every module called as one."""
    inputs = batch_of(random_samples())
    model = build_model(absolute_position_encoding="sinusoidal")
    calls = []
    model.embeddings.content[1].register_forward_hook(lambda module, args, output: calls.append(1) or output**3)
    hooked = model(**inputs).last_hidden_state
    assert calls and len(grouped_calls) == 1  # the other feature stem alone
    monkeypatch.setattr(embeddings_module, "grouped_path_allowed", lambda tensor: False)
    torch.testing.assert_close(hooked, model(**inputs).last_hidden_state, atol=1e-6, rtol=0)


@torch.no_grad()
def test_a_stem_hooked_during_the_forward_is_counted_once(monkeypatch):
    """Whether each Linear stem joins the grouped GEMM is decided once per forward: a hook that another stem's hook
    installs on it mid-call (here an identity) neither drops it nor counts it twice."""
    inputs = batch_of(random_samples())

    def run():
        model = build_model(absolute_position_encoding="sinusoidal")
        stem, installed = model.embeddings.content[1], []

        def installer(module, args, output):
            if not installed:
                installed.append(stem.register_forward_hook(lambda module, args, output: output))
            return output

        model.embeddings.content[0].register_forward_hook(installer)
        return model(**inputs).last_hidden_state

    hooked_mid_call = run()
    monkeypatch.setattr(embeddings_module, "grouped_path_allowed", lambda tensor: False)
    torch.testing.assert_close(hooked_mid_call, run(), atol=1e-6, rtol=0)

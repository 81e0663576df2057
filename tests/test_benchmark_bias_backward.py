"""scripts/benchmark_bias_backward.py and benchmark_speed.py's bias rows: the measured candidate (flash kernel + own
bias gradient) is exact, so its timing compares like with like; the "as before" and "denormals kept" rows run what they
name."""

import contextlib

import torch

from conftest import ROOT, denormals_flushed, load_script


def test_flash_with_bias_gradient_matches_the_math_path():
    module = load_script(ROOT / "scripts" / "benchmark_bias_backward.py")
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 40, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(2, 3, 40, 40, dtype=torch.float64, requires_grad=True)
    inputs = (query, key, value, bias)
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=0.3)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    output = module.FlashAttentionWithBiasGradient.apply(query, key, value, bias, 0.3)
    grads = torch.autograd.grad(output.square().sum(), inputs)
    torch.testing.assert_close(output, expected)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad)


def test_benchmark_speed_measures_the_code_before_the_bias_gradient_path():
    """scripts/benchmark_speed.py's "as before" row really runs SDPA's math path and the indexing lookup, and restores
    the model's own path afterwards."""
    from torch.profiler import profile

    module = load_script(ROOT / "scripts" / "benchmark_speed.py")
    model, batch = module.posattn_case(module.TWO_MODALITIES, 64, 2, hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=64, absolute_position_encoding="none",
                                       relative_position_encoding="relative_bias")
    step = module.step_fn(model, batch, True)

    def profiled_ops(context):
        with context, profile() as trace:
            step()
        return " ".join(event.key for event in trace.key_averages())

    before = profiled_ops(module.without_bias_gradient_path())
    now = profiled_ops(contextlib.nullcontext())
    assert "_scaled_dot_product_attention_math" in before and "SdpaWithBiasGradient" not in before
    assert "HeadsFirstLookup" not in before
    assert "SdpaWithBiasGradient" in now and "HeadsFirstLookup" in now
    assert "_scaled_dot_product_attention_math" not in now


def test_benchmark_speed_keeps_denormals_only_inside_the_kept_rows_steps():
    module = load_script(ROOT / "scripts" / "benchmark_speed.py")
    seen = []
    step = module.with_denormals_kept(lambda: seen.append(denormals_flushed()))
    torch.set_flush_denormal(True)
    step()
    assert seen == [False] and denormals_flushed() == torch.set_flush_denormal(True)

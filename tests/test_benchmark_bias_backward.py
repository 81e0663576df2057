"""scripts/benchmark_bias_backward.py: the measured candidate (flash kernel + own bias gradient) is exact, so its timing
compares like with like."""

import torch

from conftest import ROOT, load_script


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

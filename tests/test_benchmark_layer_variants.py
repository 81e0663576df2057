"""scripts/benchmark_layer_variants.py: every alternative computes what the model's form computes (forward and each
gradient), so its timings compare like with like, and a case that computes something else is refused."""

import pytest
import torch

from conftest import ROOT, load_script


def case_groups(module):
    """(cases, the leaves each case's gradient flows to) per group, at a small shape."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 16, requires_grad=True)
    linears = [torch.nn.Linear(16, 16) for _ in range(3)]
    parameters = [parameter for linear in linears for parameter in linear.parameters()]
    attention_inputs = module.attention_inputs(x, 2)
    return [
        (module.projection_cases(x, linears, 2), [x, *parameters]),
        (module.rotation_cases(x, linears, 2), [x, *parameters[:4]]),
        (module.kernel_cases(*attention_inputs), attention_inputs),
    ]


def gradients(case, leaves):
    outputs = case()
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    seeds = [torch.linspace(-1, 1, output.numel()).view_as(output) for output in outputs]
    return torch.autograd.grad(outputs, leaves, seeds)


def test_every_alternative_matches_the_models_form_forward_and_backward():
    module = load_script(ROOT / "scripts" / "benchmark_layer_variants.py")
    for cases, leaves in case_groups(module):
        module.check_same(cases)
        first, *others = cases.values()
        expected = gradients(first, leaves)
        for other in others:
            for got, want in zip(gradients(other, leaves), expected):
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_case_that_computes_something_else_is_refused():
    module = load_script(ROOT / "scripts" / "benchmark_layer_variants.py")
    cases = case_groups(module)[2][0]
    cases["wrong"] = lambda: list(cases.values())[0]() * 1.01
    with pytest.raises(SystemExit, match="wrong computes something else"):
        module.check_same(cases)


def test_the_timing_loop_runs_training_and_inference(capsys):
    module = load_script(ROOT / "scripts" / "benchmark_layer_variants.py")
    for cases, _ in case_groups(module):
        module.timed(cases, train=True, rounds=1)
        module.timed(cases, train=False, rounds=1)
    assert "(the model)" in capsys.readouterr().out

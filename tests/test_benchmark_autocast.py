"""scripts/benchmark_autocast.py: the "as before" cases run SDPA's own half-precision kernels (its math path for
relative_bias's bias) and the others this code's paths, the patches are undone, and the table is written."""

import collections

import torch
from conftest import ROOT, load_script

from modeling_posattn import attention_posattn, modeling_posattn, split_attention_posattn


def test_cases_run_their_paths_and_the_table_is_written(tmp_path, monkeypatch):
    module = load_script(ROOT / "scripts" / "benchmark_autocast.py")
    calls = collections.Counter()
    original = attention_posattn.SdpaWithBiasGradient.apply

    def counted(query, *args):
        calls[query.dtype] += 1
        return original(query, *args)

    monkeypatch.setattr(attention_posattn.SdpaWithBiasGradient, "apply", counted)
    modalities = {"audio": {"input_dim": 4, "sampling_rate": 100.0}, "video": {"input_dim": 6, "sampling_rate": 25.0}}
    settings = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    steps = module.cases(40, 2, modalities, settings)
    assert list(steps) == [f"{name}, {precision}" for name in module.ENCODINGS for precision in ("float32", "bfloat16")] + list(module.BEFORE.values())
    steps["relative_bias, bfloat16"]()
    assert calls == {torch.bfloat16: 1}
    steps[module.BEFORE["relative_bias"]]()
    assert calls == {torch.bfloat16: 1}  # the math path this time
    steps["relative_bias, float32"]()
    assert calls == {torch.bfloat16: 1, torch.float32: 1}
    assert attention_posattn.sdpa_attention_forward.__name__ == "sdpa_attention_forward"  # restored

    half = []
    original_half = attention_posattn.HalfPrecisionSdpa.apply
    monkeypatch.setattr(attention_posattn.HalfPrecisionSdpa, "apply", lambda *a: half.append(1) or original_half(*a))
    steps["none, bfloat16"]()
    assert len(half) == 1
    steps[module.BEFORE["none"]]()
    assert len(half) == 1  # SDPA's own half-precision kernels this time
    assert modeling_posattn.score_bias_for is split_attention_posattn.score_bias_for

    planned = collections.Counter()
    original_plan = split_attention_posattn.time_split_bias
    monkeypatch.setattr(split_attention_posattn, "time_split_bias", lambda *a: planned.update(["split"]) or original_plan(*a))
    long_steps = module.cases(40, 1, modalities, dict(settings, time_split_min_length=8))
    long_steps["relative_bias, bfloat16"]()
    assert planned == {"split": 1}  # time-split under autocast now
    long_steps[module.BEFORE["relative_bias"]]()
    assert planned == {"split": 1}  # not as before

    summary = module.interleaved(steps, rounds=1)
    assert summary["none, bfloat16"]["vs_none"]["median"] == 1.0
    assert summary["alibi, float32"]["vs_float32"]["median"] == 1.0
    module.write({"machine": "test CPU", "case": "2x40", "rounds": 1, "arguments": " --rounds 1", "cases": summary}, tmp_path)
    assert f"| {module.BEFORE['relative_bias']} |" in (tmp_path / "autocast_2x40.md").read_text()

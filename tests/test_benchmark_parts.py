"""scripts/benchmark_parts.py: its last row is benchmark_speed.py's richest case, every other row differs from a
neighbour by one piece, and the table is written."""

from conftest import ROOT, load_script


def test_the_richest_row_is_the_speed_benchmarks_richest_case():
    module = load_script(ROOT / "scripts" / "benchmark_parts.py")
    modalities, settings = list(module.PARTS.values())[-1]
    assert modalities == module.TWO_MODALITIES
    assert settings == dict(absolute_position_encoding="multiscale", position_fusion="gated",
                            relative_position_encoding="time_rope")
    assert "(the richest)" in list(module.PARTS)[-1]


def test_each_configuration_builds_and_steps_and_the_table_is_written(tmp_path):
    module = load_script(ROOT / "scripts" / "benchmark_parts.py")
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    for modalities, settings in module.PARTS.values():
        module.step_fn(*module.posattn_case(modalities, 12, 2, **small, **settings), True)()
    row = {"seconds_median": 0.1234, "ratio_median": 1.2, "ratio_min": 1.1, "ratio_max": 1.3}
    module.write({"machine": "test CPU", "mode": "training step", "rounds": 2, "timings": {"a model": row}}, tmp_path)
    table = (tmp_path / "parts.md").read_text()
    assert "| a model | 0.1234 | 1.20x [1.10-1.30] |" in table and table.startswith("Machine: test CPU. Training step")

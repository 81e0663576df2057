"""scripts/benchmark_grouped.py: its grouped case runs grouped_mm and its batched case does not, the patch is undone,
and the table is written."""

from torch import nn

from conftest import ROOT, load_script

from modeling_posattn import embeddings_posattn


def test_each_case_runs_its_path_and_the_table_is_written(tmp_path, monkeypatch):
    module = load_script(ROOT / "scripts" / "benchmark_grouped.py")
    calls = []
    original = nn.functional.grouped_mm
    monkeypatch.setattr(nn.functional, "grouped_mm", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    step = module.embedding_step(3, 16, 24, 2)
    step(False)
    assert not calls
    assert embeddings_posattn.grouped_path_allowed is not None and embeddings_posattn.grouped_path_allowed.__name__ == "grouped_path_allowed"
    step(True)
    assert len(calls) == 3  # the stems, and the gate: its content half over the tokens, its encoding half over the rows
    rows = module.measure([(2, 16)], rounds=2, length=24, batch_size=2)
    assert rows["2 x 16"]["ratio_min"] <= rows["2 x 16"]["ratio_median"] <= rows["2 x 16"]["ratio_max"]
    module.write({"machine": "test CPU", "rounds": 2, "cases": rows}, tmp_path)
    assert "| 2 x 16 |" in (tmp_path / "grouped.md").read_text()

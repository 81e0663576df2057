"""scripts/benchmark_time_split.py: each variant runs the path it names (the dense bias, or time-split attention with
its block size, restored after), and the results table is written."""

import collections

from conftest import ROOT, load_script

from modeling_posattn import split_attention_posattn
from modeling_posattn.bias_posattn import RelativeTimeBias


def test_variants_run_their_paths_and_the_table_is_written(tmp_path, monkeypatch):
    module = load_script(ROOT / "scripts" / "benchmark_time_split.py")
    blocks = collections.Counter()
    original = split_attention_posattn.key_ranges

    def counted(encoding, split, block, table):
        blocks[type(encoding).split_query_rows] += block[0] == 0
        yield from original(encoding, split, block, table)

    monkeypatch.setattr(split_attention_posattn, "key_ranges", counted)
    modalities = {"audio": {"input_dim": 4, "sampling_rate": 100.0}, "video": {"input_dim": 6, "sampling_rate": 25.0}}
    settings = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    rows = [8, 16]
    variants = module.timed_variants("relative_bias", 2, 40, rows, True, modalities, settings)
    assert list(variants) == ["none", "dense", "split 8", "split 16"]
    results = module.interleaved(variants, rounds=1)
    assert set(blocks) == set(rows)  # each split variant ran with its own block size, the dense one with none
    assert RelativeTimeBias.split_query_rows == RelativeTimeBias.split_query_rows_inference == 256  # restored
    assert results["none"]["ratio_median"] == 1.0
    module.write({"machine": "test CPU", "rounds": 1, "inference": False, "arguments": " --rounds 1",
                  "encodings": {"relative_bias": {"2x40": results}}}, tmp_path)
    assert "| relative_bias | 2x40 | split 8 |" in (tmp_path / "time_split.md").read_text()

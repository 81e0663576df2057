"""scripts/benchmark_compile.py's ceiling: it counts the kernels inductor calls as they are (flash attention, GEMMs), and
nothing else, and its table reports the speed-up they leave room for."""

import argparse

import pytest
import torch

from conftest import ROOT, load_script


def test_extern_kernel_seconds_counts_attention_and_gemms_only():
    module = load_script(ROOT / "scripts" / "benchmark_compile.py")
    matrix = torch.randn(256, 256)
    query = torch.randn(1, 2, 128, 16)
    assert module.extern_kernel_seconds(lambda: matrix @ matrix) > 0
    assert module.extern_kernel_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(query, query, query)) > 0
    assert module.extern_kernel_seconds(lambda: matrix.exp().sum()) == 0


def test_compile_table_gives_the_speed_up_and_its_ceiling(tmp_path):
    module = load_script(ROOT / "scripts" / "benchmark_compile.py")
    row = {"seconds_median": 0.09, "ratio_median": 0.9, "ratio_min": 0.85, "ratio_max": 0.95, "eager_seconds_median": 0.1,
           "first_call_seconds": 12.0, "extern_seconds": 0.08, "ceiling": 1.25}
    module.write({"machine": "test CPU", "rounds": 3, "sinusoidal / train": row}, tmp_path)
    table = (tmp_path / "compile.md").read_text()
    assert "| sinusoidal / train | 0.1000 | 0.0900 | 0.90x [0.85-0.95] | 1.11x | 0.0800 | 1.25x | 12 |" in table
    assert (tmp_path / "compile.json").exists()


def test_batch_shapes_are_parsed_and_named_in_the_rows():
    module = load_script(ROOT / "scripts" / "benchmark_compile.py")
    assert module.batch_shape("8x64") == (8, 64) and module.batch_shape("1X512") == (1, 512)
    for bad in ("8", "8x", "ax64", "0x64", "8x1"):
        with pytest.raises(argparse.ArgumentTypeError):
            module.batch_shape(bad)
    assert module.row_label("sinusoidal", (8, 512), "train") == "sinusoidal / train"
    assert module.row_label("sinusoidal", (1, 64), "inference") == "sinusoidal @ 1 x 64 / inference"

"""scripts/profile_training_step.py: profiles one real training step and prints the heaviest operators."""

from conftest import ROOT, load_script

profile_script = load_script(ROOT / "scripts" / "profile_training_step.py")


def test_it_prints_the_attention_kernels_of_a_biased_training_step(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["profile_training_step.py", "--relative", "alibi", "--length", "64", "--rows", "40"])
    profile_script.main()
    table = capsys.readouterr().out
    assert "Self CPU" in table
    assert "aten::_scaled_dot_product" in table and "backward" in table
    assert "one step without the profiler:" in table and "peak RSS" in table

"""scripts/ablate.py: naming, the run overrides, the paired test, Holm's correction, follow-up expansion, and one real
(tiny) run through `posattn-train`."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT, load_script

SCRIPT = ROOT / "scripts" / "ablate.py"
ablate = load_script(SCRIPT)


def test_configuration_names():
    assert ablate.configuration_name({"absolute_position_encoding": "sinusoidal"}) == "sinusoidal"
    assert ablate.configuration_name({"absolute_position_encoding": "none", "relative_position_encoding": "alibi"}) == "alibi"
    assert ablate.configuration_name({"absolute_position_encoding": "dynamic", "relative_position_encoding": "rope"}) == "dynamic+rope"
    assert ablate.configuration_name({"absolute_position_encoding": "multiscale", "position_fusion": "gated"}) == "multiscale [gated]"
    assert ablate.configuration_name({"absolute_position_encoding": "none"}) == "none"


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(0)
    baseline = {seed: float(value) for seed, value in enumerate(rng.uniform(0.8, 0.9, 5))}
    scores = {seed: value + float(rng.normal(0.02, 0.01)) for seed, value in baseline.items()}
    result = ablate.paired_test(scores, baseline)
    differences = np.array([scores[s] - baseline[s] for s in range(5)])
    assert math.isclose(result["p"], stats.ttest_rel(list(scores.values()), list(baseline.values())).pvalue)
    half = stats.t.ppf(0.975, 4) * differences.std(ddof=1) / math.sqrt(5)
    assert math.isclose(result["ci_high"] - result["ci_low"], 2 * half)
    constant = ablate.paired_test({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert math.isnan(constant["p"]) and math.isclose(constant["difference"], 0.1)


def test_expansion_picks_best_absolute_and_relative():
    recipe = {"grid": [{"absolute_position_encoding": a} for a in ("sinusoidal", "dynamic", "learned", "none")]
              + [{"absolute_position_encoding": "none", "relative_position_encoding": r} for r in ("rope", "alibi")],
              "expand": {"best_absolute_fusions": 2, "best_combination": True}}
    summary = [{"configuration": name} for name in ("alibi", "none", "dynamic", "rope", "learned", "sinusoidal")]
    extra = [ablate.configuration_name(s) for s in ablate.expand(recipe, summary)]
    assert extra == ["dynamic [concat]", "dynamic [gated]", "learned [concat]", "learned [gated]", "dynamic+alibi"]


def test_expansion_skips_only_what_the_grid_already_has():
    recipe = {"grid": [{"absolute_position_encoding": "sinusoidal"}, {"absolute_position_encoding": "none"},
                       {"absolute_position_encoding": "sinusoidal", "position_fusion": "gated"}],
              "expand": {"best_absolute_fusions": 1}}
    summary = [{"configuration": name} for name in ("sinusoidal", "none", "sinusoidal [gated]")]
    # Follow-ups that already have some runs stay in, so that --resume finishes their missing seeds.
    assert [ablate.configuration_name(s) for s in ablate.expand(recipe, summary)] == ["sinusoidal [concat]"]


class SerialExecutor:
    """ProcessPoolExecutor's surface, run in this process."""

    def __init__(self, max_workers=None, initializer=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, function, *args):
        from concurrent.futures import Future

        future = Future()
        future.set_result(function(*args))
        return future


def resume(tmp_path, monkeypatch, study, finished, *options, score=lambda settings: 0.9):
    """Run `ablate.py --resume` on a study whose runs.csv holds `finished` ((name, seed, score) rows), with training
    replaced by `score`; returns the (configuration, seed) pairs it launched, in order."""
    study_path, output_dir = tmp_path / "study.json", tmp_path / "results"
    study_path.write_text(json.dumps({"study": "s", "recipe": "uea", "baseline": "sinusoidal", **study}))
    output_dir.mkdir(exist_ok=True)
    with open(output_dir / "runs.csv", "w") as handle:  # as runs.csv was before runs recorded their machine
        handle.write("configuration,seed,score,train_loss,seconds,parameters\n")
        handle.writelines(f"{name},{seed},{value},0.1,1.0,10\n" for name, seed, value in finished)
    launched = []

    def fake_run(study, settings, seed, runs_dir):
        launched.append((ablate.configuration_name(settings), seed))
        return {"configuration": ablate.configuration_name(settings), "seed": seed, "score": score(settings),
                "train_loss": 0.1, "seconds": 1.0, "parameters": 10, "machine": "new CPU"}

    monkeypatch.setattr(ablate, "run_one", fake_run)
    monkeypatch.setattr(ablate, "ProcessPoolExecutor", SerialExecutor)
    monkeypatch.setattr(ablate, "plot", lambda *args, **kwargs: None)
    monkeypatch.setattr("sys.argv", ["ablate.py", "--study", str(study_path), "--output-dir", str(output_dir),
                                     "--runs-dir", str(tmp_path / "runs"), "--resume", "--jobs", "1", *options])
    ablate.main()
    return launched


SINUSOIDAL_AND_LEARNED = {"grid": [{"absolute_position_encoding": "sinusoidal"}, {"absolute_position_encoding": "learned"}],
                          "expand": {"best_absolute_fusions": 1}}


def test_resume_finishes_a_follow_up_stage_stopped_part_way(tmp_path, monkeypatch):
    finished = [("sinusoidal", 1, 0.9), ("sinusoidal", 2, 0.9), ("learned", 1, 0.91), ("learned", 2, 0.91),
                ("learned [concat]", 1, 0.9), ("learned [gated]", 1, 0.9), ("learned [gated]", 2, 0.9)]
    launched = resume(tmp_path, monkeypatch, {**SINUSOIDAL_AND_LEARNED, "seeds": 2}, finished)
    assert launched == [("learned [concat]", 2)]


def test_more_seeds_keep_the_follow_up_stage_chosen_first(tmp_path, monkeypatch):
    # Seeds 1-2 chose learned's fusions; seed 3 makes sinusoidal the best absolute. The stage must not be re-chosen.
    study = {"seeds": 3, "grid": SINUSOIDAL_AND_LEARNED["grid"] + [
        {"absolute_position_encoding": "none", "relative_position_encoding": "rope"}],
        "expand": {"best_absolute_fusions": 1, "best_combination": True}}
    finished = [(name, seed, 0.91 if name == "learned" else 0.9) for seed in (1, 2)
                for name in ("sinusoidal", "learned", "rope", "learned [concat]", "learned [gated]", "learned+rope")]
    launched = resume(tmp_path, monkeypatch, study, finished,
                      score=lambda settings: 0.99 if settings.get("absolute_position_encoding") == "sinusoidal" else 0.5)
    assert launched == [("sinusoidal", 3), ("learned", 3), ("rope", 3),
                        ("learned [concat]", 3), ("learned [gated]", 3), ("learned+rope", 3)]


def test_only_reaches_follow_ups_already_chosen_and_refuses_unknown_names(tmp_path, monkeypatch):
    study = {**SINUSOIDAL_AND_LEARNED, "seeds": 2}
    finished = [(name, 1, 0.9) for name in ("sinusoidal", "learned", "learned [concat]", "learned [gated]")]
    launched = resume(tmp_path, monkeypatch, study, finished, "--only", "sinusoidal", "learned [concat]")
    assert launched == [("sinusoidal", 2), ("learned [concat]", 2)]
    with pytest.raises(SystemExit, match="sinusoidal \\[concat\\]"):
        resume(tmp_path, monkeypatch, study, finished, "--only", "sinusoidal [concat]")


def test_compare_pairs_any_two_configurations_with_holm_over_the_pairs():
    rows = [{"configuration": name, "seed": seed, "score": base + 0.01 * seed * (name == "a [concat]")}
            for seed in range(1, 6) for name, base in (("a", 0.8), ("a [concat]", 0.82), ("b", 0.85))]
    rows[0]["score"] += 0.003
    table = ablate.compare(rows, ["a [concat]:a", "b:a"])
    expected = ablate.paired_test({r["seed"]: r["score"] for r in rows if r["configuration"] == "a [concat]"},
                                  {r["seed"]: r["score"] for r in rows if r["configuration"] == "a"})
    first = next(line for line in table.splitlines() if line.startswith("| a [concat]:a"))
    assert f"{expected['difference']:+.3f}" in first and "| 5 |" in first
    with pytest.raises(SystemExit, match="'c'"):
        ablate.compare(rows, ["c:a"])


def test_follow_up_names_parse_back_to_their_settings():
    for settings in ({"absolute_position_encoding": "dynamic", "position_fusion": "gated"},
                     {"absolute_position_encoding": "learned", "relative_position_encoding": "time_rope"}):
        assert ablate.follow_up_settings(ablate.configuration_name(settings)) == settings


def test_holm_matches_the_step_down_definition():
    adjusted = ablate.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan"), "e": 0.5})
    # m = 4 tested: 0.01 * 4 = 0.04; 0.03 * 3 = 0.09; 0.04 * 2 = 0.08 -> raised to 0.09 (monotone); 0.5 * 1 = 0.5.
    assert adjusted["a"] == pytest.approx(0.04) and adjusted["c"] == pytest.approx(0.09)
    assert adjusted["b"] == pytest.approx(0.09) and adjusted["e"] == pytest.approx(0.5)
    assert math.isnan(adjusted["d"])
    assert ablate.holm({"a": 0.6, "b": 0.7})["a"] == 1.0  # capped at 1
    assert ablate.holm({}) == {}


def test_every_run_sets_all_three_encoding_fields_over_the_recipe():
    study = {"recipe": "uea", "arguments": {"dataset_name": "natops", "num_train_epochs": 3}}
    overrides = ablate.run_overrides(study, {"relative_position_encoding": "alibi", "arguments": {"num_train_epochs": 5}},
                                     seed=2, run_dir=Path("x"))
    assert overrides["absolute_position_encoding"] == "sinusoidal" and overrides["position_fusion"] == "add"
    assert overrides["relative_position_encoding"] == "alibi" and overrides["seed"] == 2
    assert overrides["dataset_name"] == "natops" and overrides["num_train_epochs"] == 5  # the entry's over the study's


def test_summary_has_raw_and_holm_p_values():
    rows = [{"configuration": name, "seed": seed, "score": score + 0.01 * seed * (name == "b"), "seconds": 1.0,
             "machine": "cpu"} for seed in range(1, 6) for name, score in (("base", 0.8), ("a", 0.81), ("b", 0.9))]
    rows[0]["score"] -= 0.005  # base seed 1: a's differences are no longer constant
    table, summary = ablate.summarise(rows, {"study": "s", "recipe": "uea", "baseline": "base"}, "accuracy", 60.0)
    assert "p (Holm)" in table
    tests = {entry["configuration"]: entry["vs_baseline"] for entry in summary if "vs_baseline" in entry}
    assert set(tests) == {"a", "b"}
    assert tests["a"]["p_holm"] >= tests["a"]["p"] and tests["b"]["p_holm"] >= tests["b"]["p"]
    assert max(tests["a"]["p_holm"], tests["b"]["p_holm"]) == pytest.approx(max(tests["a"]["p"], tests["b"]["p"]))


def test_one_tiny_run_through_posattn_train(tmp_path):
    study = {"recipe": "synthetic", "arguments": {
        "dataset_options": {"num_train": 32, "num_test": 16}, "num_train_epochs": 1, "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "validation_split_percentage": 0,
        "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}}
    row = ablate.run_one(study, {"absolute_position_encoding": "multiscale", "position_fusion": "gated"}, seed=1,
                         runs_root=str(tmp_path))
    assert row["configuration"] == "multiscale [gated]" and 0.0 <= row["score"] <= 1.0 and row["parameters"] > 0
    config = json.loads((tmp_path / "multiscale_[gated]-seed1" / "config.json").read_text())
    assert (config["absolute_position_encoding"], config["relative_position_encoding"], config["position_fusion"]) == (
        "multiscale", "none", "gated")  # the synthetic recipe's time_rope did not leak in


def test_study_files_name_a_recipe_and_distinct_configurations():
    for path in sorted((SCRIPT.parents[1] / "configuration").glob("ablation_*.json")):
        study = ablate.load_study(str(path))
        assert (SCRIPT.parents[1] / "configuration" / f"{study['recipe']}.json").is_file(), path
        assert study["baseline"] in {ablate.configuration_name(s) for s in study["grid"]}, path


def test_p_values_are_formatted_without_false_zeros():
    assert ablate.format_p(0.0004) == "<0.001" and ablate.format_p(0.0123) == "0.012" and ablate.format_p(float("nan")) == "–"


def test_summarise_rewrites_the_tables_from_runs_csv_and_trains_nothing(tmp_path, monkeypatch):
    finished = [(name, seed, 0.9 + 0.01 * seed * (name == "learned")) for name in ("sinusoidal", "learned") for seed in (1, 2, 3)]
    launched = resume(tmp_path, monkeypatch, SINUSOIDAL_AND_LEARNED, finished, "--summarise", "--note", "Split by recipe.")
    table = (tmp_path / "results" / "summary.md").read_text()
    assert launched == []
    assert "| learned | 0.920 ± 0.010 | 3 |" in table and "| sinusoidal | 0.900 ± 0.000 | 3 |" in table
    assert "Wall time not separable" in table and table.splitlines()[0].endswith("Split by recipe.")


def test_split_runs_by_recipe_moves_the_runs_that_trained_another_model(tmp_path, monkeypatch):
    split = load_script(ROOT / "scripts" / "split_runs_by_recipe.py")
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    rows = [("sinusoidal", 1, True), ("sinusoidal", 6, False), ("learned [concat]", 1, True), ("learned [concat]", 6, False)]
    with open(results / "runs.csv", "w") as handle:
        handle.write(",".join(ablate.RUN_FIELDS) + "\n")
        for name, seed, unit_scale in rows:
            handle.write(f"{name},{seed},0.9,0.1,1.0,10\n")
            folder = runs / f"{name.replace(' ', '_')}-seed{seed}"
            folder.mkdir(parents=True)
            (folder / "config.json").write_text(json.dumps({"unit_scale_embeddings": unit_scale}))
    monkeypatch.setattr("sys.argv", ["split_runs_by_recipe.py", "--output-dir", str(results), "--runs-dir", str(runs)])
    split.main()
    kept = ablate.read_runs(results / "runs.csv")
    moved = ablate.read_runs(results / split.LEAKED_FOLDER / "runs.csv")
    assert {(row["configuration"], row["seed"]) for row in kept} == {("sinusoidal", 1), ("learned [concat]", 1)}
    assert {(row["configuration"], row["seed"]) for row in moved} == {("sinusoidal", 6), ("learned [concat]", 6)}


def test_resuming_a_table_of_unseparable_wall_time_keeps_it_unseparable(tmp_path, monkeypatch):
    """A table rebuilt by `--summarise` (rows of a mixed study) has no wall time; resuming it must not caption only the
    resumed invocation's minutes as the study's."""
    finished = [(name, seed, 0.9) for name in ("sinusoidal", "learned") for seed in (1, 2)]
    resume(tmp_path, monkeypatch, SINUSOIDAL_AND_LEARNED, finished, "--summarise")
    resume(tmp_path, monkeypatch, {**SINUSOIDAL_AND_LEARNED, "seeds": 3}, finished + [
        (f"learned [{fusion}]", seed, 0.9) for fusion in ("concat", "gated") for seed in (1, 2)])
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["wall_seconds"] is None
    assert "Wall time not separable" in (tmp_path / "results" / "summary.md").read_text()


def test_a_study_resumed_on_another_machine_counts_the_runs_of_each(tmp_path, monkeypatch):
    """Runs written before runs.csv had a machine column trained on the machine their summary.json names; the caption
    then counts the runs of each machine instead of naming only the one that resumed the study."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text(json.dumps({"machine": "old CPU", "wall_seconds": 60.0}))
    finished = [(name, seed, 0.9) for name in ("sinusoidal", "learned") for seed in (1, 2)]
    resume(tmp_path, monkeypatch, SINUSOIDAL_AND_LEARNED, finished, "--seeds", "3", "--only", "sinusoidal", "learned")
    caption = (tmp_path / "results" / "summary.md").read_text().splitlines()[0]
    assert "Machines: old CPU (4 runs); new CPU (2 runs)." in caption
    rows = ablate.read_runs(tmp_path / "results" / "runs.csv")
    assert {(row["seed"], row["machine"]) for row in rows} == {(1, "old CPU"), (2, "old CPU"), (3, "new CPU")}
    assert json.loads((tmp_path / "results" / "summary.json").read_text())["machines"] == {"old CPU": 4, "new CPU": 2}


def test_a_study_on_one_machine_names_it_once(tmp_path, monkeypatch):
    resume(tmp_path, monkeypatch, SINUSOIDAL_AND_LEARNED, [], "--seeds", "2", "--only", "sinusoidal", "learned")
    assert "Machine: new CPU." in (tmp_path / "results" / "summary.md").read_text().splitlines()[0]

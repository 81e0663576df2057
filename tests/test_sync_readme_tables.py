"""scripts/sync_readme_tables.py: the README quotes each study table exactly as `scripts/ablate.py` wrote it."""

import pytest

from conftest import ROOT, load_script

sync = load_script(ROOT / "scripts" / "sync_readme_tables.py")


def write_summary(results_dir, name, text):
    (results_dir / name).mkdir(parents=True)
    (results_dir / name / "summary.md").write_text(text)


def test_a_stale_table_is_replaced_by_its_summary_and_named(tmp_path):
    write_summary(tmp_path, "natops", "| a | 0.95 |\n")
    write_summary(tmp_path, "av_digits", "| b | 0.94 |\n")
    readme = (
        "intro\n<!-- study:natops -->\n| a | 0.90 |\n<!-- /study:natops -->\nmiddle\n"
        "<!-- study:av_digits -->\n| b | 0.94 |\n<!-- /study:av_digits -->\nend\n"
    )
    text, stale = sync.synced(readme, tmp_path)
    assert stale == ["natops"]
    assert "| a | 0.95 |" in text and "| a | 0.90 |" not in text
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert sync.synced(text, tmp_path) == (text, [])


def test_a_marker_without_a_summary_names_the_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="study:gone.*gone/summary.md"):
        sync.synced("<!-- study:gone -->\nold\n<!-- /study:gone -->\n", tmp_path)


def test_check_mode_writes_nothing_and_fails_on_a_stale_table(tmp_path):
    write_summary(tmp_path / "results", "natops", "new\n")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- study:natops -->\nold\n<!-- /study:natops -->\n")
    arguments = ["--readme", str(readme), "--results-dir", str(tmp_path / "results")]
    assert sync.main([*arguments, "--check"]) == 1
    assert "old" in readme.read_text()
    assert sync.main(arguments) == 0
    assert sync.main([*arguments, "--check"]) == 0


def test_the_readme_quotes_every_study_table_as_written():
    text, stale = sync.synced((ROOT / "README.md").read_text(), ROOT / "docs" / "results")
    assert "<!-- study:natops -->" in text
    assert stale == [], f"README tables differ from docs/results/*/summary.md: {stale}; run python scripts/sync_readme_tables.py"

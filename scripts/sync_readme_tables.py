#!/usr/bin/env python
"""Copy each study's `summary.md` (written by `scripts/ablate.py`) into the README, between its markers.

The README quotes every study table verbatim between `<!-- study:NAME -->` and `<!-- /study:NAME -->`, where NAME is
the folder under `docs/results/`. Run this after a study writes a new table; `--check` exits 1 and names the stale
tables instead of writing, so a test can keep the README from quoting numbers no command produced.

    python scripts/sync_readme_tables.py            # rewrite README.md
    python scripts/sync_readme_tables.py --check    # exit 1 if a quoted table differs from its summary.md
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKED_TABLE = re.compile(r"(<!-- study:(?P<name>[\w./-]+) -->\n)(?P<body>.*?)(<!-- /study:(?P=name) -->)", re.DOTALL)


def synced(readme: str, results_dir: Path) -> tuple[str, list[str]]:
    """The README with every marked table replaced by its summary.md, and the names of the tables that changed."""
    stale = []

    def replace(match: re.Match) -> str:
        summary_path = results_dir / match["name"] / "summary.md"
        if not summary_path.is_file():
            raise SystemExit(f"README marks a table 'study:{match['name']}' but {summary_path} does not exist.")
        summary = summary_path.read_text().rstrip("\n") + "\n"
        if summary != match["body"]:
            stale.append(match["name"])
        return match[1] + summary + match[4]

    return MARKED_TABLE.sub(replace, readme), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)

    text, stale = synced(args.readme.read_text(), args.results_dir)
    if args.check:
        if stale:
            print(f"stale README tables (run python scripts/sync_readme_tables.py): {', '.join(stale)}", file=sys.stderr)
        return 1 if stale else 0
    args.readme.write_text(text)
    print(f"updated: {', '.join(stale) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's results at a glance are generated from the shipped files, never typed."""
from pathlib import Path

import pytest

from nplib.lab import summary

ROOT = Path(__file__).resolve().parents[1]


def test_readme_summary_is_what_the_shipped_files_give():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(summary.BEGIN) + len(summary.BEGIN):readme.index(summary.END)]
    assert block.strip() == summary.summary_markdown().strip(), \
        "README.md is out of date: python -m nplib summary --write README.md"


def test_summary_has_at_most_eight_rows_each_with_its_source():
    rows = [ln for ln in summary.summary_markdown().splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    assert 1 <= len(rows) <= 8
    assert all("`nplib/" in r for r in rows)


def test_write_summary_replaces_only_the_block(tmp_path):
    f = tmp_path / "R.md"
    f.write_text(f"top\n{summary.BEGIN}\nold\n{summary.END}\nbottom\n", encoding="utf-8")
    assert summary.write_summary(f) is True
    text = f.read_text(encoding="utf-8")
    assert text.startswith("top\n") and text.endswith("bottom\n") and "old" not in text
    assert summary.write_summary(f) is False
    (tmp_path / "N.md").write_text("no markers\n")
    with pytest.raises(ValueError):
        summary.write_summary(tmp_path / "N.md")

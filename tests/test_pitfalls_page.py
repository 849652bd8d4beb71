"""docs/pitfalls.md names, for each known trap, the tests that guard against it: they must exist."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "pitfalls.md"


def _references():
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)(\*?)`", PAGE.read_text())


def test_page_lists_nine_traps_in_order():
    rows = re.findall(r"^\| (\d) \|", PAGE.read_text(), flags=re.M)
    assert rows == [str(i) for i in range(1, 10)]


def test_every_test_named_on_the_pitfalls_page_exists():
    refs = _references()
    assert len(refs) >= 8
    for path, name, star in refs:
        source = (ROOT / path).read_text()
        names = re.findall(r"^def (test_\w+)", source, flags=re.M)
        found = [n for n in names if (n.startswith(name) if star else n == name)]
        assert found, f"docs/pitfalls.md names {path}::{name}{star}, which does not exist"

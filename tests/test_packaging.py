"""Packaging: environment.yml and pyproject.toml name the same packages; every notebook is paired."""
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in meta["dependencies"]}
    for reqs in meta["optional-dependencies"].values():
        names |= {_name(r) for r in reqs}
    return names


def environment_packages() -> set[str]:
    names, in_deps = set(), False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line and not line[0].isspace():
            in_deps = line.startswith("dependencies:")
        s = line.strip()
        if not in_deps or not s.startswith("- "):
            continue
        item = s[2:].strip()
        if item.startswith("pip:"):
            continue
        if item.startswith("-e") or item.startswith("."):
            continue
        n = _name(item)
        if n in ("python", "pip"):
            continue
        names.add({"pytorch": "torch"}.get(n, n))
    return names


def test_environment_yml_and_pyproject_name_the_same_packages():
    assert pyproject_packages() == environment_packages()


def test_users_requested_dependencies_are_declared():
    wanted = {"torch", "torchvision", "numpy", "matplotlib", "torchsummary", "ipywidgets", "nbval", "jupytext"}
    assert wanted <= pyproject_packages()


def test_every_notebook_has_its_paired_script_and_they_are_in_sync():
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(ROOT / "notebooks"))  # [tool.jupytext] of pyproject.toml
    assert config is not None and config.notebook_metadata_filter == "-all"
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks, "no notebooks found"
    scripts = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert [p.stem for p in notebooks] == [p.stem for p in scripts]
    for nb_path in notebooks:
        nb = jupytext.read(nb_path)
        expected = jupytext.writes(nb, fmt="py:percent", config=config)
        actual = nb_path.with_suffix(".py").read_text()
        assert actual == expected, f"{nb_path.name} and its .py are out of sync: run `jupytext --sync {nb_path}`"


def test_committed_notebooks_ran_top_to_bottom_without_errors():
    import json

    for nb_path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(nb_path.read_text())
        counts = []
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            tags = cell.get("metadata", {}).get("tags", [])
            if cell.get("execution_count") is not None:
                counts.append(cell["execution_count"])
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors or "raises-exception" in tags, f"{nb_path.name}: error output in an untagged cell"
        assert counts, f"{nb_path.name} has no executed cells: commit it with the outputs of a full run"
        assert counts == sorted(counts) and counts[0] == 1, f"{nb_path.name}: not run top to bottom"

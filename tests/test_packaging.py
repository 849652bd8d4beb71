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


#: Colab's preinstalled versions (README.md "Colab"): the Colab install must accept them as they are.
COLAB_VERSIONS = {"ipywidgets": "7.7.1", "ipykernel": "6.17.1", "ipython": "7.34.0", "jupyter-client": "7.4.9",
                  "torch": "2.11.0", "torchvision": "0.26.0", "numpy": "2.1.3", "matplotlib": "3.10.0",
                  "tqdm": "4.67.1", "torchsummary": "1.5.1", "jupytext": "1.19.5", "nbformat": "5.11.1"}


def _requirements(*extras: str) -> list:
    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in extras:
        reqs += meta["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


@pytest.mark.parametrize("extra", ["colab", "notebooks"])
def test_colab_install_accepts_every_preinstalled_colab_version(extra):
    """Installing nplib (with the colab or notebooks extra) on Colab must upgrade nothing."""
    for req in _requirements(extra):
        name = req.name.lower().replace("_", "-")
        if name in COLAB_VERSIONS:
            assert req.specifier.contains(COLAB_VERSIONS[name]), f"{req} rejects Colab's {name} {COLAB_VERSIONS[name]}"


def test_notebooks_extra_accepts_ipywidgets_7_and_8_but_not_9():
    (req,) = [r for r in _requirements("notebooks") if r.name == "ipywidgets"]
    assert req.specifier.contains("7.7.1") and req.specifier.contains("8.1.5")
    assert not req.specifier.contains("9.0.0") and not req.specifier.contains("7.6.5")


def test_colab_install_hint_names_the_colab_extra_and_repo_url():
    from nplib.notebook import REPO_URL, colab_install_hint

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "colab" in extras
    assert colab_install_hint() == f"install -q 'nplib[colab] @ git+{REPO_URL}'"


def test_results_and_checkpoints_are_package_data():
    """nplib/results/*.json and nplib/checkpoints/*.pt + *.json ship in the wheel (checked installed
    in tests/test_colab.py); pytest no longer collects the notebooks from the checkout."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = cfg["tool"]["setuptools"]["package-data"]["nplib"]
    assert set(data) >= {"results/*.json", "checkpoints/*.pt", "checkpoints/*.json"}
    assert list((ROOT / "nplib" / "results").glob("*.json")), "no shipped results"
    pytest_cfg = cfg["tool"]["pytest"]["ini_options"]
    assert pytest_cfg["testpaths"] == ["tests"] and "nbval" not in pytest_cfg["addopts"]

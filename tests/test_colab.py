"""The notebooks as Colab runs them: installed from a wheel (not editable) into Colab's pinned
packages, each notebook opened ALONE in an empty folder, nothing written outside that folder and the
runs directory.

One session-scoped fixture builds the wheel from the checkout's files (copied to a temporary folder,
so the build writes nothing into the checkout), makes a fresh venv with Colab's pins
(:data:`COLAB_PINS`; torch and torchvision as pip resolves them) and installs the wheel the way the
notebooks' Colab cell does (:func:`nplib.notebook.colab_install_hint`, with the wheel in place of the
git URL). Every notebook is then checked by strict nbval inside that venv, alone in an empty folder,
in full mode (its committed outputs compared with a fresh run, ``notebooks/nbval_sanitize.cfg``), so
its kernel is Colab's ipykernel 6.17 / IPython 7.34 / ipywidgets 7.7.1, and with torch limited to ONE
thread (``OMP_NUM_THREADS=1``). The course's own ``pytest --nbval notebooks`` runs the same notebooks
with the machine's threads: a thread count changes the order of floating-point sums the way another
CPU does, so a printed number that depends on the CPU fails one of the two runs. This is the one
other run of each notebook in CI (no separate quick-mode run).

Set ``NPLIB_COLAB_VENV=/some/dir`` to keep the venv between sessions (it is made there if missing
and reused, with the wheel reinstalled, if present): the first build takes a few minutes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nplib.notebook import colab_install_hint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: Colab's preinstalled versions of the packages an nplib install could move (Colab's published
#: pip freeze, see README.md "Colab"); torch / torchvision are whatever pip resolves here.
COLAB_PINS = {"ipywidgets": "7.7.1", "ipykernel": "6.17.1", "ipython": "7.34.0", "jupyter_client": "7.4.9",
              "numpy": "2.1.3", "matplotlib": "3.10.0", "tqdm": "4.67.1", "torchsummary": "1.5.1",
              "jupytext": "1.19.5", "nbformat": "5.11.1"}
#: Also in Colab's runtime (torch, torchvision, nbclient), or the test tools that check the notebooks
#: there (pytest, nbval): installed before the wheel, so the wheel's install must still move nothing.
EXTRA = ["torch", "torchvision", "nbclient", "nbval", "pytest"]
SANITIZE = ROOT / "notebooks" / "nbval_sanitize.cfg"


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{shlex.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-3000:]}")
    return r.stdout


def _freeze(python: Path) -> dict[str, str]:
    out = _run([python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"])
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(out)}


def _checkout_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a commit of this checkout would hold."""
    out = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


def _digest(files: list[Path]) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def repo_snapshot() -> dict:
    """``git status --porcelain`` of the checkout and the content of every file it would commit."""
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT)
    return {"status": status, "files": _digest([ROOT / f for f in _checkout_files()])}


def _pip_args_from_hint(wheel: Path) -> list[str]:
    """The notebooks' Colab install line with the wheel in place of ``git+REPO_URL``."""
    args = shlex.split(colab_install_hint())
    assert args[0] == "install" and len(args) >= 2, args
    req = args[-1]
    name, _, url = req.partition(" @ ")
    assert url.startswith("git+"), req
    return args[1:-1] + [f"{name} @ {wheel.as_uri()}"]


_VENV: dict = {}


def _make_pinned_venv(venv: Path) -> None:
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", *(f"{k}=={v}" for k, v in COLAB_PINS.items()), *EXTRA],
         timeout=1800)


def start_building_the_venv() -> None:
    """Start making the pinned venv in a background thread (``conftest.py`` calls this right after
    collection when the slow tier runs): pip spends most of its minute or two unpacking wheels on one
    core, while the tests before this file use the other one."""
    if _VENV or os.environ.get("NPLIB_COLAB_VENV"):
        return
    import tempfile
    import threading

    folder = Path(tempfile.mkdtemp(prefix="nplib-colab-venv-"))

    def build():
        try:
            _make_pinned_venv(folder / "venv")
        except BaseException as err:  # re-raised by the fixture, in the test that needs the venv
            _VENV["error"] = err

    _VENV.update(folder=folder, thread=threading.Thread(target=build, daemon=True))
    _VENV["thread"].start()


def remove_the_venv() -> None:
    """Delete the background venv (``conftest.py`` calls this at the end of the session)."""
    if _VENV.get("folder"):
        if _VENV["thread"].is_alive():
            _VENV["thread"].join(1800)
        shutil.rmtree(_VENV["folder"], ignore_errors=True)


@pytest.fixture(scope="session")
def colab_env(tmp_path_factory):
    """A venv with Colab's pins and nplib installed from a wheel; its python, site-packages, freezes."""
    t0 = time.time()
    tmp = tmp_path_factory.mktemp("colab")
    src = tmp / "src"
    for f in _checkout_files():
        if f.startswith(("notebooks/", "slides/", "student/", "tests/", "runs/")):
            continue
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(tmp / "wheel"), "--no-deps", "-q"])
    (wheel,) = (tmp / "wheel").glob("nplib-*.whl")

    if _VENV.get("thread"):
        _VENV["thread"].join()
        if "error" in _VENV:
            raise _VENV["error"]
        venv = _VENV["folder"] / "venv"
    else:
        venv = Path(os.environ.get("NPLIB_COLAB_VENV") or tmp / "venv")
    python = venv / "bin" / "python"
    if not python.exists():
        _make_pinned_venv(venv)
    elif not _VENV.get("thread"):
        _run([python, "-m", "pip", "uninstall", "-y", "-q", "nplib"])
    before = _freeze(python)
    assert "nplib" not in before
    _run([python, "-m", "pip", "install", *_pip_args_from_hint(wheel)], timeout=1800)
    after = _freeze(python)
    site = Path(_run([python, "-c", "import nplib, pathlib; print(pathlib.Path(nplib.__file__).parent)"],
                     cwd=tmp).strip())
    print(f"\ncolab-like venv ready in {time.time() - t0:.0f} s: {venv}")
    return {"python": python, "venv": venv, "before": before, "after": after, "site": site, "tmp": tmp,
            "wheel": wheel}


def test_wheel_install_moves_none_of_colabs_pins(colab_env):
    before, after = colab_env["before"], colab_env["after"]
    for name, version in COLAB_PINS.items():
        assert before[name.replace("_", "-")] == version, f"the venv did not get Colab's {name}=={version}"
    assert {k: v for k, v in after.items() if k != "nplib"} == before, "installing nplib changed packages"
    assert after["nplib"] == "0.1.0"


def test_colab_install_hint_is_a_plain_pip_install_from_repo_url():
    from nplib.notebook import REPO_URL

    hint = colab_install_hint()
    assert hint == f"install -q 'nplib[colab] @ git+{REPO_URL}'"
    assert colab_install_hint("https://example.org/x/y").endswith("git+https://example.org/x/y'")
    with pytest.raises(ValueError):
        colab_install_hint("github.com/no/scheme")


def test_installed_package_ships_results_and_checkpoints(colab_env):
    site = colab_env["site"]
    assert "site-packages" in str(site), f"nplib imported from {site}, not from the installed wheel"
    shipped = sorted(p.name for p in (site / "results").glob("*.json"))
    assert shipped == sorted(p.name for p in (ROOT / "nplib" / "results").glob("*.json"))
    assert sorted(p.name for p in (site / "checkpoints").iterdir()) == \
        sorted(p.name for p in (ROOT / "nplib" / "checkpoints").iterdir() if p.suffix in (".pt", ".json"))
    out = _run([colab_env["python"], "-m", "nplib", "bench", "report"], cwd=colab_env["tmp"])
    assert "### 2. Peak training memory" in out


def test_widgets_under_colabs_ipywidgets_7(colab_env, tmp_path):
    """The explorers under ipywidgets 7.7.1: drawn once when built, a PNG of the default view kept."""
    from test_widgets import check_widget_notebook, execute_widget_notebook

    code = ("from nplib.course import plots, widgets; calls = []; orig = plots.plot_schedule_explorer\n"
            "plots.plot_schedule_explorer = lambda *a: calls.append(a) or orig(*a)\n"
            "ui = widgets.schedule_explorer(kind='linear', T=7, alpha_bar_max=0.999)\n"
            "import ipywidgets; print(ipywidgets.__version__, calls, type(ui).__name__)")
    out = _run([colab_env["python"], "-c", code], cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"})
    assert "7.7.1 [('linear', 7, 0.999)] interactive" in out.strip().splitlines()[-1], out
    report = execute_widget_notebook(tmp_path, python=str(colab_env["python"]))
    assert report["version"] == "7.7.1"
    check_widget_notebook(report)


_RUNS: dict[str, dict] = {}


def _check_alone(colab_env, name: str) -> dict:
    """Copy ``name`` alone into an empty folder and check it there with strict nbval, full mode, one
    torch thread."""
    area = colab_env["tmp"] / "nb" / name.removesuffix(".ipynb")
    folder, runs, home = area / "content", area / "runs", area / "home"
    for d in (folder, runs, home):
        d.mkdir(parents=True)
    shutil.copy2(ROOT / "notebooks" / name, folder / name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NPLIB_", "MPLBACKEND", "PYTEST", "JUPYTER", "OMP_NUM_THREADS"))}
    env.update(NPLIB_SMOKE="0", NPLIB_NO_DOWNLOAD="1", NPLIB_RUNS=str(runs), HOME=str(home), OMP_NUM_THREADS="1",
               PATH=f"{colab_env['venv'] / 'bin'}:{env.get('PATH', '')}")
    if os.environ.get("NPLIB_DATA"):
        env["NPLIB_DATA"] = os.environ["NPLIB_DATA"]
    t0 = time.time()
    r = subprocess.run([colab_env["python"], "-m", "pytest", "--nbval", name, "-q", "-p", "no:cacheprovider",
                        "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), "--nbval-cell-timeout", "900",
                        "--durations=5", "-o", "console_output_style=classic"],
                       cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
    seconds = time.time() - t0
    status = "ok" if r.returncode == 0 else f"nbval failed ({r.returncode}):\n" + re.sub(
        r"\x1b\[[0-9;]*m", "", r.stdout[-6000:] + r.stderr[-2000:])
    print(f"\n{name}: strict nbval, 1 thread: {status.splitlines()[0]} ({seconds:.0f} s)")
    return {"status": status, "seconds": seconds, "folder": folder, "runs": runs, "home": home,
            "written": sorted(str(p.relative_to(area)) for p in area.rglob("*") if p.is_file())}


def run_notebook_alone(colab_env, name: str) -> dict:
    """The check of ``name`` (:func:`_check_alone`); the first call checks every notebook, as many at
    once as this process may use CPUs (each kernel runs torch on one thread, so they do not compete).
    The installed package and the checkout are fingerprinted before and after all of them."""
    if not _RUNS:
        from concurrent.futures import ThreadPoolExecutor

        from nplib.speed.cpu import usable_cpus

        site = lambda: _digest(sorted(p for sub in ("results", "checkpoints")
                                      for p in (colab_env["site"] / sub).rglob("*")))
        site_before, repo_before = site(), repo_snapshot()
        longest_first = sorted(NOTEBOOKS, key=lambda n: n[:2] not in ("05", "04", "03"))
        with ThreadPoolExecutor(max_workers=usable_cpus()) as pool:
            done = dict(zip(longest_first, pool.map(lambda n: _check_alone(colab_env, n), longest_first)))
        site_after, repo_after = site(), repo_snapshot()
        for n, res in done.items():
            res.update(site_changed=sorted(set(site_before.items()) ^ set(site_after.items())),
                       repo_before=repo_before, repo_after=repo_after)
            _RUNS[n] = res
    return _RUNS[name]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_alone_from_the_installed_wheel_matches_its_committed_outputs_with_one_thread(colab_env, name):
    """Strict nbval: every cell runs (only cells tagged raises-exception may raise) and prints what is committed."""
    res = run_notebook_alone(colab_env, name)
    assert res["status"] == "ok", f"{name}: {res['status']}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_writes_only_in_its_folder_and_the_runs_directory(colab_env, name):
    res = run_notebook_alone(colab_env, name)
    assert res["site_changed"] == [], f"a notebook wrote into the installed nplib: {res['site_changed'][:5]}"
    # HOME is a throw-away folder too; matplotlib / torch caches may land there, nothing else may
    stray = [w for w in res["written"] if not w.startswith(("content/", "runs/", "home/"))]
    assert stray == [], stray


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_running_a_notebook_never_modifies_a_tracked_file(colab_env, name):
    res = run_notebook_alone(colab_env, name)
    before, after = res["repo_before"], res["repo_after"]
    changed = sorted(set(before["files"].items()) ^ set(after["files"].items()))
    assert before["status"] == after["status"] and not changed, \
        f"running the notebooks changed the checkout: {sorted({p for p, _ in changed})[:10]}"


def test_setup_prints_no_machine_path(tmp_path, monkeypatch, capsys):
    """Notebook outputs are committed: setup() shows the data root and runs folder without the
    machine's folder names (relative, $NPLIB_..., ~/...), yet they resolve to the right folders."""
    from nplib.notebook import setup, shown_path

    nbdir = tmp_path / "course" / "notebooks"
    nbdir.mkdir(parents=True)
    monkeypatch.chdir(nbdir)
    data = tmp_path / "elsewhere" / "data"
    monkeypatch.setenv("NPLIB_DATA", str(data))
    monkeypatch.setenv("NPLIB_RUNS", str(tmp_path / "course" / "runs"))
    s = setup(seed=0, device="cpu")
    out = capsys.readouterr().out
    assert str(tmp_path) not in out
    assert "data root: $NPLIB_DATA" in out and "runs (checkpoints, results): ../runs" in out
    assert s.runs == tmp_path / "course" / "runs" and s.runs.is_dir()
    assert shown_path(nbdir) == "." and shown_path(nbdir.parent) == ".." and shown_path(nbdir / "a" / "b") == "a/b"
    assert shown_path(Path("/nonexistent-root/x/y")) == ".../y"

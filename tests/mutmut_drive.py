"""Run mutmut's mutants in ONE pytest session (the in-process driver of the mutation testing in
tests/README.md, "Mutation testing").

mutmut 3.8.1 forks a worker per mutant and starts pytest in it; on the course's loaded 2-core
machine those workers got almost no CPU. This driver uses the same mutants, the same trampolines
(the MUTANT_UNDER_TEST environment variable) and the same test-to-function map (mutmut's stats
file) as `mutmut run`; only the scheduling differs: pytest collects once, then for every mutant it
runs, with MUTANT_UNDER_TEST set to the mutant's name, the tests that mutmut maps to the mutated
function (fastest first, stopping at the first failure), then the "extra" tests (tests added after
the measured suite, run LAST so a kill by one of them means the older tests let the mutant live).

Usage, from a fresh snapshot (mutmut copies the sources into mutants/, so never run it in a
checkout others are editing):

    rm -rf /tmp/mut && mkdir /tmp/mut
    cp -r nplib tests conftest.py setup.cfg pyproject.toml /tmp/mut/ && cd /tmp/mut
    export OMP_NUM_THREADS=1
    # 1. generate mutants/ and mutants/mutmut-stats.json (mutmut's first phase, no mutant run)
    python tests/mutmut_drive.py --prepare
    # 2. run the mutants whose names match the fnmatch patterns; results go to OUT.json
    python tests/mutmut_drive.py --out /tmp/mut/results.json "nplib.schedules.x_*" ...
    # 3. per-module counts and the survivors
    python tests/mutmut_drive.py --out /tmp/mut/results.json --summary "nplib.schedules.x_*" ...
    mutmut show NAME              # one mutant's diff (the verdicts are also in mutmut results)

Options:
    --prepare          run mutmut's generation + stats phase in-process (mutmut 3.8.1 internals;
                       equivalent to interrupting `mutmut run` once it prints "Running mutation
                       testing"), then exit. Needs the [mutmut] section of setup.cfg.
    --out FILE         results, {mutant: {status, by, cpu_s}}; mutants already in FILE are skipped,
                       so an interrupted run resumes where it stopped (default mutmut-drive.json)
    --extra PREFIX     a test node id (or prefix) run after the mapped tests for every mutant;
                       repeatable, or comma-separated
    --interleave SPEC  e.g. "models:3,continuous:4,schedules:1,ett:1": shuffle each module's
                       mutants (seed 0) and take them round robin with these weights, so that a run
                       stopped early has run a uniform random sample of every module
    --cpu-limit S      CPU seconds per mutant before it counts as a timeout (default 30)
    --summary          print the counts per module and the survivors of OUT, run nothing

Status per mutant: killed (with the node id of the first failing test), survived, timeout, or
"no tests" (no test executes the function). They are also written to mutants/nplib/*.py.meta in
mutmut's exit-code convention, so `mutmut results` lists them.
"""
import argparse
import fnmatch
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

EXIT_CODE = {"killed": 1, "survived": 0, "timeout": 36, "no tests": 33}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("patterns", nargs="*", help="fnmatch patterns on mutant names")
    p.add_argument("--out", default="mutmut-drive.json")
    p.add_argument("--extra", action="append", default=[])
    p.add_argument("--interleave", default=os.environ.get("DRIVE_INTERLEAVE", ""))
    p.add_argument("--cpu-limit", type=float, default=float(os.environ.get("DRIVE_CPU_LIMIT", "30")))
    p.add_argument("--prepare", action="store_true")
    p.add_argument("--summary", action="store_true")
    a = p.parse_args(argv)
    a.extra = [e for x in a.extra + [os.environ.get("DRIVE_EXTRA", "")] for e in x.split(",") if e]
    if not a.prepare and not a.patterns:
        p.error("give at least one mutant-name pattern (e.g. 'nplib.schedules.x_*')")
    return a


def prepare():
    """mutmut's `run` up to its stats phase: copy the sources to mutants/, write the mutants and
    the trampolines, run the configured tests once to map tests to functions."""
    if not Path("setup.cfg").exists() and not Path("pyproject.toml").exists():
        raise FileNotFoundError("run --prepare in the snapshot root (the folder with setup.cfg)")
    try:
        from mutmut import __main__ as mm
    except ImportError as e:
        raise SystemExit(f"mutmut is not installed (pip install mutmut==3.8.1): {e}")
    mm.set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    mm.copy_src_dir()
    mm.copy_also_copy_files()
    mm.setup_source_paths()
    mm.store_lines_covered_by_tests()
    stats = mm.create_mutants(1)
    print(f"mutants written: {stats.mutated} files mutated, {stats.ignored} ignored, "
          f"{stats.unmodified} unmodified", flush=True)
    runner = mm.get_mutant_runner(1)
    mm.collect_or_load_stats(runner, apply_config_invalidation=True)
    if not Path("mutants/mutmut-stats.json").exists():
        raise SystemExit("mutmut did not write mutants/mutmut-stats.json (stats phase failed)")
    print("stats written to mutants/mutmut-stats.json", flush=True)


def list_jobs(patterns, interleave):
    """(meta_path, mutant name, mapped tests fastest first) for every mutant matching a pattern,
    in the order of the patterns, or interleaved (see --interleave)."""
    stats = json.load(open("mutmut-stats.json"))
    tests_by_fn = stats["tests_by_mangled_function_name"]
    duration = stats["duration_by_test"]
    metas, jobs = {}, []
    for meta_path in sorted(Path("nplib").glob("*.py.meta")):
        meta = json.load(open(meta_path))
        metas[meta_path] = meta
        for name in meta["exit_code_by_key"]:
            hits = [i for i, p in enumerate(patterns) if fnmatch.fnmatch(name, p)]
            if hits:
                fn = re.sub(r"__mutmut_\d+$", "", name)
                tests = sorted(tests_by_fn.get(fn, []), key=lambda t: duration.get(t, 1.0))
                jobs.append((hits[0], meta_path, name, tests))
    jobs = [j[1:] for j in sorted(jobs, key=lambda j: (j[0], j[2]))]
    if interleave:
        import random
        weights = dict((kv.split(":")[0], int(kv.split(":")[1])) for kv in interleave.split(","))
        by_mod = {}
        for j in jobs:
            by_mod.setdefault(j[1].split(".")[1], []).append(j)
        for js in by_mod.values():
            random.Random(0).shuffle(js)
        order = []
        while any(by_mod.get(m) for m in weights):
            for m, w in weights.items():
                for _ in range(w):
                    if by_mod.get(m):
                        order.append(by_mod[m].pop(0))
        jobs = order
    return metas, jobs


def summary(jobs, results):
    rows = {}
    for _, name, _ in jobs:
        mod = name.split(".")[1]
        r = rows.setdefault(mod, {"mutants": 0, "killed": 0, "survived": 0, "timeout": 0,
                                  "no tests": 0, "not run": 0})
        r["mutants"] += 1
        r[results[name]["status"] if name in results else "not run"] += 1
    for mod, r in rows.items():
        print(mod, r)
    for _, name, _ in jobs:
        if results.get(name, {}).get("status") in ("survived", "timeout", "no tests"):
            print(results[name]["status"], name)


class Timeout(BaseException):
    pass


def main(argv):
    a = parse_args(argv)
    root = Path.cwd()
    if a.prepare:
        prepare()
        return 0
    if not (root / "mutants" / "mutmut-stats.json").exists():
        raise FileNotFoundError("no mutants/mutmut-stats.json here: run this in the snapshot root, "
                                "after `python tests/mutmut_drive.py --prepare`")
    out_path = (root / a.out).resolve()
    os.chdir(root / "mutants")
    sys.path.insert(0, str(root / "mutants"))
    metas, jobs = list_jobs(a.patterns, a.interleave)
    results = json.load(open(out_path)) if out_path.exists() else {}
    if a.summary:
        summary(jobs, results)
        return 0

    import pytest
    from _pytest.runner import runtestprotocol

    def on_prof(signum, frame):
        raise Timeout()

    class Driver:
        def pytest_runtestloop(self, session):
            items = {it.nodeid: it for it in session.items}
            extra = [nid for nid in items if any(nid.startswith(p) for p in a.extra)]
            print(f"{len(extra)} extra tests appended to every mutant", flush=True)
            signal.signal(signal.SIGPROF, on_prof)
            todo = [j for j in jobs if j[1] not in results]
            print(f"{len(jobs)} mutants match, {len(todo)} to run", flush=True)
            t_start = time.time()
            for n, (meta_path, name, tests) in enumerate(todo, 1):
                os.environ["MUTANT_UNDER_TEST"] = name
                status, by = ("survived" if tests else "no tests"), None
                c0 = time.process_time()
                signal.setitimer(signal.ITIMER_PROF, a.cpu_limit)
                try:
                    for nid in tests + [e for e in extra if e not in tests]:
                        item = items.get(nid)
                        if item is None:
                            continue
                        reports = runtestprotocol(item, log=False, nextitem=None)
                        if any(r.failed for r in reports):
                            status, by = "killed", nid
                            break
                except Timeout:
                    status, by = "timeout", None
                finally:
                    signal.setitimer(signal.ITIMER_PROF, 0)
                os.environ["MUTANT_UNDER_TEST"] = ""
                results[name] = {"status": status, "by": by, "cpu_s": round(time.process_time() - c0, 3)}
                metas[meta_path]["exit_code_by_key"][name] = EXIT_CODE[status]
                if n % 10 == 0 or n == len(todo):
                    json.dump(results, open(out_path, "w"), indent=1)
                    for mp, meta in metas.items():
                        json.dump(meta, open(mp, "w"), indent=4)
                    print(f"{n}/{len(todo)} {time.time() - t_start:.0f}s", flush=True)
            return True

    needed = sorted({t.split("::")[0] for _, _, tests in jobs for t in tests}
                    | {e.split("::")[0] for e in a.extra})
    if not needed:
        print("no test is mapped to the matching mutants and no --extra test given")
        return 1
    os.environ["MUTANT_UNDER_TEST"] = ""
    return pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly", *needed], plugins=[Driver()])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

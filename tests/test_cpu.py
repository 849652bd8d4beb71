"""nplib.speed.cpu: the malloc tuning (the same numbers) and the side-by-side CPU benchmark.

How much faster the tuning makes a step is a measurement, not a property: `python -m nplib bench` and
nplib.speed.cpu.measure_cpu_options report it; the tests here check numbers only, never a time or a memory count.
"""
import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from nplib.speed.cpu import CPU_OPTIONS, FAST_MALLOC_ENV, measure_cpu_options


CHILD = r"""
import json, sys, torch
if sys.argv[1] == "tuned":
    from nplib.speed.cpu import tune_malloc
    assert tune_malloc(export=False)
torch.set_num_threads(1)
from nplib.models import NoPropDT
torch.manual_seed(0)
m = NoPropDT((1, 28, 28), 10, T=2, block="small")
o = m.configure_optimizers()
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 1, 28, 28, generator=g); y = torch.randint(0, 10, (64,), generator=g)
m.training_step(x, y, o)
losses = [m.training_step(x, y, o)["loss"] for _ in range(5)]
print(json.dumps({"losses": losses}))
"""


@pytest.mark.skipif(platform.system() != "Linux" or "glibc" not in " ".join(platform.libc_ver()).lower(),
                    reason="mallopt is glibc's")
@pytest.mark.slow
def test_tuned_malloc_gives_bit_identical_losses():
    runs = {}
    for mode in ("default", "tuned"):
        env = {k: v for k, v in __import__("os").environ.items() if k not in FAST_MALLOC_ENV}
        r = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, timeout=900)
        assert r.returncode == 0, r.stderr
        runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    assert runs["tuned"]["losses"] == runs["default"]["losses"]          # bit for bit: only memory reuse changes


@pytest.mark.slow
def test_cpu_option_benchmark_reports_every_configuration():
    options = {k: v for k, v in CPU_OPTIONS.items() if "bf16" in k or "block-parallel" in k}
    rows = measure_cpu_options(T=2, batch_size=16, steps=1, warmup=1, rounds=1, options=options)
    assert [r["configuration"] for r in rows] == list(options)
    assert rows[0]["speedup"] == 1.0 and all(r["images_per_s"] > 0 for r in rows)
    assert rows[1]["processes"] == 2 and rows[1]["seconds_per_epoch_60k"] == pytest.approx(60_000 / rows[1]["images_per_s"])
    with pytest.raises(ValueError):
        measure_cpu_options(steps=0)


def test_usable_cpus_follows_the_affinity_mask_and_the_cgroup_quota(tmp_path, monkeypatch):
    from nplib.speed.cpu import usable_cpus

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    quota = tmp_path / "cpu.max"
    quota.write_text("200000 100000\n")          # 2 CPUs' worth of time per period
    assert usable_cpus(str(quota)) == 2
    quota.write_text("150000 100000\n")          # 1.5 CPUs: one thread per whole CPU
    assert usable_cpus(str(quota)) == 1
    quota.write_text("max 100000\n")             # no quota: the affinity mask decides
    assert usable_cpus(str(quota)) == 64
    assert usable_cpus(str(tmp_path / "missing")) == 64
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5, 7})
    assert usable_cpus(str(quota)) == 3


def test_fit_threads_lowers_but_never_raises_torch_threads(monkeypatch):
    import nplib.speed.cpu as cpu

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        monkeypatch.setattr(cpu, "usable_cpus", lambda: 2)
        assert cpu.fit_threads_to_cpus() == (3, 2) and torch.get_num_threads() == 2
        monkeypatch.setattr(cpu, "usable_cpus", lambda: 8)
        assert cpu.fit_threads_to_cpus() == (2, 2) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


def test_write_result_makes_the_folder_and_writes_the_json_as_asked(tmp_path, capsys):
    from nplib.reference import write_result

    path = write_result(tmp_path / "a" / "b.json", {"x": [1, 2]})
    assert path.read_text() == '{\n "x": [\n  1,\n  2\n ]\n}\n' and f"wrote {path}" in capsys.readouterr().out
    path = write_result(tmp_path / "c.json", {"x": 1}, indent=2, end="")
    assert path.read_text() == '{\n  "x": 1\n}'

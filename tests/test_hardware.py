"""What a run ran on: the one-line summary, the ledger column, the journal and compare."""

import json
import os

import pytest
from helpers import run_script

from labbench.machine.blas import resolve_blas
from labbench.machine.hardware import cpu_model, gather_hardware, hardware_line, short_os
from labbench.present.journal import render_journal
from labbench.record.ledger import finish_run, journal_dir, open_ledger, start_run

EPYC = {
    "cpu": "AMD EPYC",
    "cores": 2,
    "memory_bytes": 23 * 2**30 + 123_456_789,
    "os": "Linux 6.1.0-18-amd64",
    "machine": "x86_64",
    "mlx_device": "cpu",
    "blas": "OpenBLAS 0.3.33 (Zen)",
    "blas_library": "/venv/site-packages/ngsolve_openblas/libopenblasp-r0.3.33.so",
}
M2 = {
    "cpu": "Apple M2 Pro",
    "cores": 12,
    "memory_bytes": 32 * 2**30,
    "os": "macOS 14.5",
    "machine": "arm64",
    "mlx_device": "gpu",
    "blas": "Metal",
    "blas_library": None,
}


def test_hardware_line():
    assert (
        hardware_line(EPYC)
        == "AMD EPYC, 2 cores, 23 GiB, Linux 6.1, mlx cpu, OpenBLAS 0.3.33 (Zen)"
    )
    assert hardware_line(M2) == "Apple M2 Pro, 12 cores, 32 GiB, macOS 14.5, mlx gpu, Metal"
    assert hardware_line({"cpu": "AMD EPYC", "blas": "mlx reference BLAS"}) == (
        "AMD EPYC, mlx reference BLAS"
    )
    assert hardware_line({}) == "unknown CPU"


def test_short_os():
    assert short_os("Linux 6.1.0-18-amd64") == "Linux 6.1"
    assert short_os("Linux 6.18.5+deb14-cloud-amd64") == "Linux 6.18"
    assert short_os("macOS 14.5") == "macOS 14.5"
    assert short_os("Linux") == "Linux"


def test_gather_hardware_describes_this_machine():
    hardware = gather_hardware("mlx reference BLAS")
    assert hardware["cpu"] == cpu_model() and hardware["cpu"]
    assert hardware["cores"] == os.cpu_count()
    assert hardware["memory_bytes"] > 2**28
    assert hardware["mlx_device"] in ("cpu", "gpu")
    assert (hardware["blas"], hardware["blas_library"]) == ("mlx reference BLAS", None)


@pytest.mark.timeout(120)  # the first self-test of this machine's BLAS starts a process
def test_every_recorded_run_has_its_hardware_and_the_journal_shows_it(isolated_ledger):
    db = open_ledger(isolated_ledger)
    run = start_run(db, "bench", {}, model="/m/tiny")
    finish_run(run, "ok")
    recorded = json.loads(db.table("runs").get(run.id)["hardware"])
    blas = resolve_blas()
    assert recorded == gather_hardware(blas.name, str(blas.library) if blas.library else None)

    journal = render_journal(db, journal_dir(isolated_ledger))
    assert f"\n**Hardware:** {hardware_line(recorded)}\n" in journal


def test_a_run_recorded_before_m006_has_no_hardware_line(isolated_ledger):
    db = open_ledger(isolated_ledger)
    run = start_run(db, "bench", {}, model="/m/tiny", hardware=None)
    finish_run(run, "ok")
    assert "**Hardware:**" not in render_journal(db, journal_dir(isolated_ledger))


def record_eval(db, hardware: dict) -> int:
    run = start_run(db, "eval", {}, model="models/tiny", suite="baseline", hardware=hardware)
    for index in range(6):
        run.add_eval_result(
            {"prompt_id": f"p{index}", "category": "c", "score": 1.0, "explanation": "ok"}
        )
    finish_run(run, "ok")
    return run.id


@pytest.mark.timeout(180)
def test_compare_says_when_runs_ran_on_different_hardware(isolated_ledger):
    db = open_ledger(isolated_ledger)
    a, b, c = record_eval(db, EPYC), record_eval(db, M2), record_eval(db, EPYC)

    different = run_script("compare", str(a), str(b))
    assert different.returncode == 0, different.stderr
    note = "note: the runs ran on different hardware:"
    assert (
        f"{note} A: {hardware_line(EPYC)}; B: {hardware_line(M2)}" in different.stdout.splitlines()
    )

    same = run_script("compare", str(a), str(c))
    assert same.returncode == 0, same.stderr
    assert "different hardware" not in same.stdout

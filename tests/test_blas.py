"""The BLAS self-test on real libraries: the bundled OpenBLAS, and broken ones built here with cc.

Each fake library exports cblas_sgemm and sgemm_ (the symbols mlx-cpu calls) and misbehaves:
one traps (SIGILL on x86, as a kernel for a missing instruction set does), one leaves the
product untouched. Its constructor appends a line to $FAKE_BLAS_LOG, so a test can count how
many processes loaded it, i.e. how many times the self-test really ran.
"""

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_script
from sqlite_utils import Database

from labbench.core.errors import describe_exit
from labbench.machine.blas import (
    OPENBLAS_ENV,
    REFERENCE_BLAS,
    BlasChoice,
    bundled_library,
    openblas_env,
    resolve_blas,
    self_test,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux preloads BLAS")

FAKE_BLAS_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void loaded(void) {
    const char *log = getenv("FAKE_BLAS_LOG");
    FILE *file = log ? fopen(log, "a") : NULL;
    if (file) { fputs("loaded\n", file); fclose(file); }
}

static void misbehave(void) {
#ifdef TRAP
    __builtin_trap();
#endif
    /* otherwise: return without touching C, a wrong product */
}

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc) { misbehave(); }

void sgemm_(const char *trans_a, const char *trans_b, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
            const float *beta, float *c, const int *ldc) { misbehave(); }
"""


def build_fake_blas(directory: Path, name: str, *defines: str) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a fake BLAS")
    source = directory / "fake_blas.c"
    source.write_text(FAKE_BLAS_SOURCE)
    built = directory / f"{name}.tmp"
    command = [compiler, "-shared", "-fPIC", "-O0", *defines, "-o", str(built), str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    library = directory / name
    built.replace(library)  # a new file, as an upgrade would leave it
    return library


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A self-test cache of this test's own, so every verdict here is fresh."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def trapping_blas(tmp_path) -> Path:
    return build_fake_blas(tmp_path, "libtrapblas.so", "-DTRAP")


@pytest.fixture
def wrong_blas(tmp_path) -> Path:
    return build_fake_blas(tmp_path, "libwrongblas.so")


def loads(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@linux_only
@pytest.mark.timeout(120)
def test_a_trapping_library_is_refused_with_the_signal_named(trapping_blas, isolated_cache, capsys):
    env = {**os.environ, OPENBLAS_ENV: str(trapping_blas)}
    choice = resolve_blas(env)
    assert choice.library is None and choice.name == REFERENCE_BLAS
    # __builtin_trap is ud2 on x86 (SIGILL); other CPUs may raise another signal.
    crash = "SIGILL (illegal instruction)" if platform.machine() == "x86_64" else ""
    assert choice.warning is not None
    assert choice.warning.startswith(
        f"warning: OpenBLAS at {trapping_blas} failed its self-test (killed by {crash}"
    )
    assert choice.warning.endswith("); using mlx's reference BLAS (slower)")

    child_env = openblas_env(env)
    assert str(trapping_blas) not in child_env.get("LD_PRELOAD", "")
    assert child_env == env
    assert capsys.readouterr().err == choice.warning + "\n"


@linux_only
@pytest.mark.timeout(120)
def test_a_library_that_computes_wrong_is_refused(wrong_blas, isolated_cache, capsys):
    env = {**os.environ, OPENBLAS_ENV: str(wrong_blas)}
    choice = resolve_blas(env)
    assert choice == BlasChoice(
        REFERENCE_BLAS,
        warning=f"warning: OpenBLAS at {wrong_blas} failed its self-test (wrong matrix product);"
        " using mlx's reference BLAS (slower)",
    )
    assert str(wrong_blas) not in openblas_env(env).get("LD_PRELOAD", "")
    assert capsys.readouterr().err.splitlines() == [choice.warning]


@linux_only
def test_a_missing_library_is_named_in_one_warning(tmp_path, isolated_cache, capsys):
    missing = tmp_path / "nowhere" / "libopenblas.so"
    env = {**os.environ, OPENBLAS_ENV: str(missing)}
    assert openblas_env(env) == env
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {OPENBLAS_ENV}={missing}: no such file; using mlx's reference BLAS (slower)"
    ]


@linux_only
def test_zero_turns_it_off_without_a_word(isolated_cache, capsys):
    env = {**os.environ, OPENBLAS_ENV: "0"}
    assert resolve_blas(env) == BlasChoice(REFERENCE_BLAS)
    assert openblas_env(env) == env
    assert capsys.readouterr().err == ""
    assert not isolated_cache.exists()  # nothing was tested


@linux_only
@pytest.mark.timeout(180)
def test_the_verdict_is_cached_until_the_library_changes(tmp_path, isolated_cache):
    log = tmp_path / "loads.log"
    library = build_fake_blas(tmp_path, "libwrongblas.so")
    env = {**os.environ, OPENBLAS_ENV: str(library), "FAKE_BLAS_LOG": str(log)}

    first = resolve_blas(env)
    assert loads(log) == 1
    assert resolve_blas(env) == first  # from the cache: no process loaded the library again
    assert loads(log) == 1

    time.sleep(0.01)  # a rebuilt file gets a new mtime even on coarse clocks
    build_fake_blas(tmp_path, "libwrongblas.so", "-DREBUILT=1")
    assert resolve_blas(env) == first
    assert loads(log) == 2


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
    reason="ngsolve-openblas ships for Linux x86-64 only",
)
@pytest.mark.timeout(120)
def test_the_bundled_openblas_passes_here_and_names_its_kernel(isolated_cache):
    library = bundled_library()
    assert library is not None, "ngsolve-openblas is a dependency on Linux x86-64"
    started = time.monotonic()
    result = self_test(library)
    seconds = time.monotonic() - started
    assert result.passed, result.reason
    assert re.fullmatch(r"OpenBLAS \d+\.\d+\.\d+ \(\w+\)", result.blas), result.blas
    # ~0.2 s alone; the bound only catches a self-test grown slow, on a shared machine.
    assert seconds < 10

    env = {k: v for k, v in os.environ.items() if k != OPENBLAS_ENV}
    assert resolve_blas(env) == BlasChoice(result.blas, library)
    assert openblas_env(env)["LD_PRELOAD"].split()[0] == str(library)


@pytest.mark.parametrize(
    "returncode, words",
    [
        (0, "exited with code 0"),
        (2, "exited with code 2"),
        (-4, "killed by SIGILL (illegal instruction)"),
        (-11, "killed by SIGSEGV (segmentation fault)"),
        (-9, "killed by SIGKILL (killed)"),
        (-6, "killed by SIGABRT (aborted)"),
        (-15, "killed by SIGTERM (terminated)"),
        (-7, "killed by SIGBUS (bus error)"),
        (-1, "killed by SIGHUP"),
        (-200, "killed by signal 200"),
    ],
)
def test_describe_exit(returncode, words):
    if returncode in (-7, -4, -11, -6) and sys.platform != "linux":
        pytest.skip("signal numbers differ off Linux")
    assert describe_exit(returncode) == words


@pytest.mark.timeout(60)
def test_describe_exit_of_a_real_crash():
    done = subprocess.run(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"],
        timeout=60,
    )
    assert done.returncode == -signal.SIGILL
    assert describe_exit(done.returncode) == "killed by SIGILL (illegal instruction)"


@linux_only
@pytest.mark.slow("a tiny-model server, crashing under a broken BLAS preloaded")
@pytest.mark.timeout(300)
def test_eval_with_a_crashing_library_falls_back_and_succeeds(
    tiny_model, trapping_blas, isolated_cache, isolated_ledger
):
    env = {**os.environ, OPENBLAS_ENV: str(trapping_blas)}
    result = run_script("eval", "suite=baseline", env=env)
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warning.startswith(f"warning: OpenBLAS at {trapping_blas} failed its self-test")
    [run] = Database(isolated_ledger)["runs"].rows
    assert run["status"] == "ok"
    assert json.loads(run["hardware"])["blas"] == REFERENCE_BLAS


@pytest.mark.skipif(platform.machine() != "x86_64", reason="__builtin_trap is SIGILL on x86")
@linux_only
@pytest.mark.slow("a tiny-model server, crashing under a broken BLAS preloaded")
@pytest.mark.timeout(300)
def test_a_server_killed_by_a_signal_says_which(tiny_model, trapping_blas, isolated_ledger):
    # The user's own LD_PRELOAD is theirs to keep: nothing of ours vets it, so this server dies.
    env = {**os.environ, OPENBLAS_ENV: "0", "LD_PRELOAD": str(trapping_blas)}
    result = run_script("eval", "suite=baseline", env=env)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in result.stderr
    assert f"server for {tiny_model} did not start: killed by SIGILL (illegal instruction)" in last

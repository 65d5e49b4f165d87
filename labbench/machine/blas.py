"""Run MLX on Linux with OpenBLAS instead of the slow reference BLAS bundled in mlx-cpu, safely.

The mlx-cpu wheel links netlib's reference BLAS: LoRA steps are ~10x faster with OpenBLAS. We
preload `ngsolve-openblas` from PyPI, a DYNAMIC_ARCH build that picks its kernels for the CPU at
run time (a single-target build, such as cmeel-openblas's SKYLAKEX one, dies of SIGILL on a CPU
without AVX-512). It needs `libgfortran.so.5`, which mlx-cpu bundles under a mangled name, so we
expose it through a symlink.

Before a library is first preloaded, a fresh Python process multiplies known integer matrices
with it through mlx; a crash or a wrong product means mlx keeps its own BLAS, with a one-line
warning. The verdict is cached per library file, CPU model and mlx version.

LD_PRELOAD only works for a process started with it: servers get it in their environment,
in-process training re-executes itself once. macOS uses Metal and Accelerate: nothing to do.
"""

import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from labbench.core.atomicfile import write_text_atomically
from labbench.core.errors import describe_exit
from labbench.machine.hardware import cpu_model

# Unset (or 1): the bundled ngsolve-openblas; 0: mlx's own BLAS; a path: that library instead.
OPENBLAS_ENV = "LABBENCH_OPENBLAS"
REFERENCE_BLAS = "mlx reference BLAS"
SELF_TEST_TIMEOUT_S = (
    60.0  # normally ~0.1 s; a slow first import on a loaded machine is not a failure
)
CACHE_FILE = "blas-self-test.json"

# Runs in a fresh interpreter with the library preloaded. Prints one JSON line. The integers are
# small enough that a float32 product is exact, so the check is equality, not a tolerance.
_SELF_TEST_SCRIPT = """
import ctypes, json
import mlx.core as mx
m, k, n = 48, 40, 32
a = [[(i * 3 + p) % 7 - 3 for p in range(k)] for i in range(m)]
b = [[(p * 5 + j) % 11 - 5 for j in range(n)] for p in range(k)]
want = [[sum(a[i][p] * b[p][j] for p in range(k)) for j in range(n)] for i in range(m)]
with mx.stream(mx.cpu):
    got = (mx.array(a, dtype=mx.float32) @ mx.array(b, dtype=mx.float32)).tolist()
result = {"correct": got == want}
process = ctypes.CDLL(None)
for name in ("openblas_get_config", "openblas_get_corename"):
    function = getattr(process, name, None)
    if function is not None:
        function.restype = ctypes.c_char_p
        result[name] = (function() or b"").decode(errors="replace")
print(json.dumps(result))
"""


@dataclass(frozen=True)
class SelfTest:
    passed: bool
    blas: str  # what the library says it is, e.g. "OpenBLAS 0.3.33 (Zen)"
    reason: str | None = None  # why it failed, e.g. "killed by SIGILL (illegal instruction)"


@dataclass(frozen=True)
class BlasChoice:
    """The BLAS that processes labbench starts will use."""

    name: str  # "OpenBLAS 0.3.33 (Zen)", "mlx reference BLAS" or "Metal"
    library: Path | None = None  # the file preloaded; None: nothing is preloaded
    warning: str | None = None  # one line for stderr when the wanted library was refused


def _site_packages() -> Path | None:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).parent


def bundled_library() -> Path | None:
    """ngsolve-openblas's library, found without importing the package (importing loads it)."""
    site = _site_packages()
    if site is None:
        return None
    found = sorted(glob.glob(str(site / "ngsolve_openblas" / "libopenblas*.so*")))
    return Path(found[0]) if found else None


def library_env(library: Path, env: dict[str, str]) -> dict[str, str]:
    """A copy of `env` that preloads `library`, with mlx-cpu's libgfortran findable."""
    env = dict(env)
    site = _site_packages()
    gfortran = sorted(glob.glob(str(site / "mlx_cpu.libs" / "libgfortran-*.so.5*"))) if site else []
    paths = []
    if gfortran and site is not None:
        link_dir = Path(tempfile.gettempdir()) / f"labbench-blas-{os.getuid()}"
        link_dir.mkdir(exist_ok=True)
        link = link_dir / "libgfortran.so.5"
        if not link.exists() or os.path.realpath(link) != os.path.realpath(gfortran[0]):
            tmp = link_dir / f"libgfortran.so.5.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(gfortran[0])
            tmp.replace(link)
        # The mangled libgfortran needs its mangled libquadmath beside it.
        paths = [str(link_dir), str(site / "mlx_cpu.libs")]
    present = env.get("LD_LIBRARY_PATH", "")
    paths = [p for p in paths if p not in present.split(":")] + [present]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    if str(library) not in env.get("LD_PRELOAD", "").split():
        env["LD_PRELOAD"] = " ".join(p for p in [str(library), env.get("LD_PRELOAD", "")] if p)
    return env


def blas_name(result: dict, library: Path) -> str:
    """'OpenBLAS 0.3.33 (Zen)' from openblas_get_config/corename; the file for other BLASes."""
    config = result.get("openblas_get_config", "").split()
    if len(config) >= 2 and config[0] == "OpenBLAS":
        core = result.get("openblas_get_corename", "").strip()
        return f"OpenBLAS {config[1]}" + (f" ({core})" if core else "")
    return f"BLAS from {library.name}"


def self_test(library: Path, env: dict[str, str] | None = None) -> SelfTest:
    """Multiply known matrices through mlx in a fresh process that preloads `library`."""
    child_env = library_env(library, dict(os.environ if env is None else env))
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SELF_TEST_SCRIPT],
            env=child_env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SELF_TEST_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return SelfTest(False, "", f"no answer within {SELF_TEST_TIMEOUT_S:.0f} s")
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] if done.returncode > 0 else []
        return SelfTest(False, "", ": ".join([describe_exit(done.returncode), *last]))
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return SelfTest(False, "", "it printed no result")
    if not result.get("correct"):
        return SelfTest(False, blas_name(result, library), "wrong matrix product")
    return SelfTest(True, blas_name(result, library))


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "labbench" / CACHE_FILE


def _cache_key(library: Path) -> str:
    """The library file as it is now, on this CPU, with this mlx: any change means a re-test."""
    from importlib import metadata  # ~0.1 s to import: not on the way to --help

    stat = library.stat()
    try:
        mlx_version = metadata.version("mlx")
    except metadata.PackageNotFoundError:
        mlx_version = None
    return json.dumps(
        [str(library.resolve()), stat.st_size, stat.st_mtime_ns, cpu_model(), mlx_version]
    )


def cached_self_test(library: Path, env: dict[str, str] | None = None) -> SelfTest:
    """`self_test`, run once per library file, CPU and mlx version (cached as JSON)."""
    key = _cache_key(library)
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache, dict) and isinstance(cache.get(key), dict):
        try:
            return SelfTest(**cache[key])
        except TypeError:
            pass  # written by another version: test again
    result = self_test(library, env)
    if result.reason and result.reason.startswith("no answer"):
        return result  # a busy machine is not a verdict on the library
    cache = cache if isinstance(cache, dict) else {}
    cache[key] = asdict(result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(cache, indent=1, sort_keys=True))
    except OSError:
        pass  # an unwritable cache costs ~0.1 s per process, nothing more
    return result


def resolve_blas(env: dict[str, str] | None = None) -> BlasChoice:
    """Which BLAS mlx processes started with `env` (default os.environ) should use."""
    env = dict(os.environ if env is None else env)
    if sys.platform == "darwin":
        return BlasChoice("Metal")
    if not sys.platform.startswith("linux"):
        return BlasChoice(REFERENCE_BLAS)
    setting = env.get(OPENBLAS_ENV, "").strip()
    if setting == "0":
        return BlasChoice(REFERENCE_BLAS)
    fallback = "using mlx's reference BLAS (slower)"
    if setting in ("", "1"):
        library = bundled_library()
        if library is None:  # e.g. Linux aarch64: no wheel, so mlx's own BLAS, no fuss
            return BlasChoice(REFERENCE_BLAS)
    else:
        library = Path(setting).expanduser()
        if not library.is_file():
            warning = f"warning: {OPENBLAS_ENV}={setting}: no such file; {fallback}"
            return BlasChoice(REFERENCE_BLAS, warning=warning)
        library = library.resolve()
    result = cached_self_test(library, env)
    if not result.passed:
        warning = (
            f"warning: OpenBLAS at {library} failed its self-test ({result.reason}); {fallback}"
        )
        return BlasChoice(REFERENCE_BLAS, warning=warning)
    return BlasChoice(result.blas, library)


_warned: set[str] = set()


def openblas_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default os.environ) that preloads OpenBLAS when it passed its self-test.

    A refused library is said once per process on stderr; the copy then preloads nothing.
    """
    env = dict(os.environ if env is None else env)
    choice = resolve_blas(env)
    if choice.warning and choice.warning not in _warned:
        _warned.add(choice.warning)
        print(choice.warning, file=sys.stderr)
    if choice.library is None:
        return env
    return library_env(choice.library, env)


def reexec_with_openblas() -> None:
    """Re-execute this script once with OpenBLAS preloaded (no-op if already, or unavailable)."""
    env = openblas_env()
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

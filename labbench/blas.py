"""Run MLX on Linux with OpenBLAS instead of the slow reference BLAS bundled in mlx-cpu.

The mlx-cpu wheel links netlib's reference BLAS: a 1024^3 fp32 matmul takes ~400 ms against
~7 ms with OpenBLAS, and LoRA steps are ~10x faster. `cmeel-openblas` ships a real OpenBLAS on
PyPI. It needs `libgfortran.so.5`, which mlx-cpu bundles under a mangled name, so we expose it
through a symlink. LD_PRELOAD only works for a process started with it: servers get it in
their environment, in-process training re-executes itself once. macOS uses Metal: no-op.
"""

import glob
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

DISABLE_ENV = "LABBENCH_OPENBLAS"  # set to 0 to keep mlx-cpu's own BLAS


def _site_packages() -> Path | None:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).parent


def openblas_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default os.environ) that preloads OpenBLAS, when it is available."""
    env = dict(os.environ if env is None else env)
    if not sys.platform.startswith("linux") or env.get(DISABLE_ENV) == "0":
        return env
    site = _site_packages()
    if site is None:
        return env
    openblas = site / "cmeel.prefix" / "lib" / "libopenblas.so.0"
    gfortran = sorted(glob.glob(str(site / "mlx_cpu.libs" / "libgfortran-*.so.5*")))
    if not openblas.exists() or not gfortran:
        return env
    if str(openblas) in env.get("LD_PRELOAD", ""):
        return env
    link_dir = Path(tempfile.gettempdir()) / f"labbench-blas-{os.getuid()}"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "libgfortran.so.5"
    if not link.exists() or os.path.realpath(link) != os.path.realpath(gfortran[0]):
        tmp = link_dir / f"libgfortran.so.5.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(gfortran[0])
        tmp.replace(link)
    paths = [str(link_dir), str(site / "mlx_cpu.libs"), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    env["LD_PRELOAD"] = " ".join(p for p in [str(openblas), env.get("LD_PRELOAD", "")] if p)
    return env


def reexec_with_openblas() -> None:
    """Re-execute this script once with OpenBLAS preloaded (no-op if already, or unavailable)."""
    env = openblas_env()
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

"""Where mlx-lm-lora 5.10.2 (pinned in pyproject.toml) needs help, each in one place, so each is
easy to delete once fixed upstream.

1. On Linux CPU its dpo, orpo, cpo and six more trainers start with
   `mx.set_wired_limit(mx.device_info()["max_recommended_working_set_size"])`. That key exists
   on Apple GPUs only: on CPU `mx.device_info()` is {'architecture', 'device_name'} and the
   trainer dies with KeyError (mlx-lm itself reads the key with `.get()`). `cpu_device_info()`
   supplies the key as 0 (no wired limit, which is what CPU memory is anyway) while a trainer
   runs, only when the key is missing. Remove it, and its test (tests/test_preference.py
   test_cpu_device_info_*), when `mx.device_info()` without the key no longer crashes
   `train_dpo`.
2. Its trainers print with tqdm (a progress bar and `tqdm.write` reports): `quiet_progress()`
   silences them while a trainer runs, as labbench/train/trainreports.py's QuietUI does for
   mlx-lm; labbench prints one line per report itself, from the callback.
mlx-lm-lora's other trap, fusing a model into the adapter directory, lives in its command line
(`fuse: True` by default) only: labbench calls its trainers, never its `run()`, so nothing is
fused (tests check the adapter directory holds no model).
"""

import contextlib
from collections.abc import Generator
from types import ModuleType

WORKING_SET_KEY = "max_recommended_working_set_size"


@contextlib.contextmanager
def cpu_device_info() -> Generator[None]:
    """While this runs, `mx.device_info()` has WORKING_SET_KEY (0 when the device has none)."""
    import mlx.core as mx

    original = mx.device_info
    if WORKING_SET_KEY in original():
        yield
        return

    def with_working_set(*device) -> dict[str, str | int]:
        return {WORKING_SET_KEY: 0, **original(*device)}

    setattr(mx, "device_info", with_working_set)  # noqa: B010 (typed as mlx's own function)
    try:
        yield
    finally:
        setattr(mx, "device_info", original)  # noqa: B010


class _QuietBar:
    """Stands in for tqdm in a trainer module: iterates, and shows nothing."""

    def __init__(self, iterable=(), *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    @staticmethod
    def write(*args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def quiet_progress(module: ModuleType) -> Generator[None]:
    """A trainer module's `tqdm` replaced by _QuietBar while this runs."""
    original = getattr(module, "tqdm")  # noqa: B009 (a module's global, set back below)
    setattr(module, "tqdm", _QuietBar)  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "tqdm", original)  # noqa: B010

"""How far an eval has got, on stderr: a tqdm bar on a terminal; in a log (nohup, CI, a pipe),
where a bar is unreadable, a line every 10 % of the results or every 30 s, with done/total,
failures and the time left."""

import sys
import time
from collections.abc import Callable
from typing import TextIO

LINE_EVERY_SHARES = 10  # a line each time another tenth of the results is in
LINE_EVERY_S = 30.0  # and at least this often, so a slow run shows it is alive


def duration_text(seconds: float) -> str:
    """12 s, 4m 05s, 2h 03m."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class LogProgress:
    """Progress lines for a log: `prompts: 12/30 done, 1 failed, about 40 s left`."""

    def __init__(
        self,
        total: int,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.out = out or sys.stderr
        self.clock = clock
        self.started = self.last_line = clock()
        self.shares_shown = 0

    def update(self, failed: bool) -> None:
        """One more result (`failed`: its request got no answer)."""
        self.done += 1
        self.failed += failed
        shares = self.done * LINE_EVERY_SHARES // max(self.total, 1)
        if shares > self.shares_shown:
            self.shares_shown = shares
            self._line()
        else:
            self.tick()

    def tick(self) -> None:
        """Called while waiting: a line when the last one is LINE_EVERY_S old."""
        if self.clock() - self.last_line >= LINE_EVERY_S:
            self._line()

    def close(self) -> None:
        pass

    def _line(self) -> None:
        now = self.clock()
        self.last_line = now
        elapsed = now - self.started
        if self.done >= self.total:
            when = f"took {duration_text(elapsed)}"
        elif self.done:
            when = f"about {duration_text(elapsed / self.done * (self.total - self.done))} left"
        else:
            when = f"none yet after {duration_text(elapsed)}"
        print(
            f"prompts: {self.done}/{self.total} done, {self.failed} failed, {when}",
            file=self.out,
            flush=True,
        )


class BarProgress:
    """tqdm's bar on a terminal, with the failures beside it."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="prompts", file=sys.stderr)
        self.failed = 0

    def update(self, failed: bool) -> None:
        if failed:
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.bar.close()


def eval_progress(total: int) -> "BarProgress | LogProgress":
    return BarProgress(total) if sys.stderr.isatty() else LogProgress(total)

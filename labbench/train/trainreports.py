"""mlx-lm's training reports as `train_reports` rows, one printed line each, in place of its
rich UI (labbench/train/training.py hands ReportWriter to mlx-lm as its TrainingCallback).
"""

import sys
import time

from sqlite_utils import Database


class QuietUI:
    """Stands in for mlx-lm's rich training UI (a context manager whose methods, and the
    `advance` callables they hand out, do nothing): our writer prints one line per report."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return QuietUI


class ReportWriter:
    """Turns mlx-lm's report dicts into `train_reports` rows (and one printed line each).

    Our own wall clock runs between reports, with validation time taken out, so the bench can
    check mlx-lm's iterations_per_second against it. mlx-lm computes iterations_per_second as
    steps_per_report / time, which is wrong for a final partial window: corrected here.
    """

    def __init__(
        self,
        db: Database,
        run_id: int,
        steps_per_report: int,
        echo: bool = True,
        rate_assumes_full_window: bool = True,
    ):
        self.db = db
        # mlx-lm (and mlx-lm-lora's DPO and ORPO) divide steps_per_report by the window's time;
        # mlx-lm-lora's GRPO divides the steps the window really had, which needs no correction.
        self.rate_assumes_full_window = rate_assumes_full_window
        self.run_id = run_id
        self.steps_per_report = steps_per_report
        self.echo = echo
        self.last_iteration = 0
        self.val_seconds = 0.0
        self.window_started = time.perf_counter()
        self.reports: list[dict] = []

    def start(self, iteration: int = 0) -> None:
        """Training starts (after `iteration`, when a run is resumed)."""
        self.last_iteration = iteration
        self.window_started = time.perf_counter()

    def on_train_loss_report(self, info: dict) -> None:
        now = time.perf_counter()
        iterations = info["iteration"] - self.last_iteration
        counted = self.steps_per_report if self.rate_assumes_full_window else iterations
        train_seconds = counted / info["iterations_per_second"]
        row = {
            "run_id": self.run_id,
            "iteration": info["iteration"],
            "split": "train",
            "loss": info["train_loss"],
            "learning_rate": info["learning_rate"],
            "iterations_per_second": iterations / train_seconds,
            "tokens_per_second": info["tokens_per_second"],
            "trained_tokens": info["trained_tokens"],
            "peak_memory_gb": info["peak_memory"],
            "window_seconds": now - self.window_started - self.val_seconds,
            "val_seconds": self.val_seconds,
        }
        self.db.table("train_reports").insert(row)
        self.reports.append(row)
        self.last_iteration = info["iteration"]
        self.val_seconds = 0.0
        if self.echo:
            print(
                f"iter {row['iteration']:>5}  loss {row['loss']:.3f}  "
                f"{1 / row['iterations_per_second']:.3f} s/iter  "
                f"{row['tokens_per_second']:.0f} tok/s  peak {row['peak_memory_gb']:.3f} GB",
                file=sys.stderr,
                flush=True,
            )
        self.window_started = time.perf_counter()

    def on_val_loss_report(self, info: dict) -> None:
        self.val_seconds += info["val_time"]
        self.db.table("train_reports").insert(
            {
                "run_id": self.run_id,
                "iteration": info["iteration"],
                "split": "val",
                "loss": info["val_loss"],
                "val_seconds": info["val_time"],
            }
        )
        if self.echo:
            print(
                f"iter {info['iteration']:>5}  val loss {info['val_loss']:.3f}",
                file=sys.stderr,
                flush=True,
            )

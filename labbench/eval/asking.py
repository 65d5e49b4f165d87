"""Asking a suite's prompts: concurrently on daemon threads (mlx_lm.server batches them), with
answers whose code is tested handed to a pool of test threads, one per core, so executing never
holds up a request. Results are written to the ledger from the main thread, one row as each
prompt completes, so a crash never loses finished results, and a Ctrl-C still writes the answers
in flight (labbench/eval/evaluation.py records the run around it).
"""

import queue
import sys
import threading
import time

from labbench.core.settings import EvalSettings, SamplingSettings
from labbench.eval.progress import eval_progress
from labbench.eval.prompting import ask, finish_row, needs_tests, tests_workers, too_long_row
from labbench.eval.suitetypes import Prompt, Suite
from labbench.record.ledger import Run
from labbench.serving.chatclient import Endpoint, ServerGone
from labbench.serving.endpoints import EndpointPool

DEFAULTS = EvalSettings()


def run_suite(
    run: Run,
    suite: Suite,
    endpoint: "Endpoint | EndpointPool",
    sampling: SamplingSettings,
    concurrency: int = DEFAULTS.concurrency,
    epochs: int = DEFAULTS.epochs,
    done: frozenset[tuple[str, int]] = frozenset(),
    too_long: dict[str, tuple[int, int, int]] | None = None,
) -> list[dict]:
    """Evaluate every prompt `epochs` times, writing each row to the ledger as it completes;
    returns the rows. Epoch 1 of every prompt is asked first, so a run that stops early has
    whole epochs. The (prompt id, epoch) pairs in `done` already have a result and are not
    asked (a resumed run). Prompts in `too_long` (id -> tokens, max_tokens, context) are not
    sent: each gets its too-long row.

    Answers whose code is tested go to a pool of tests_workers() threads, so the request
    threads send the next prompt at once: the tests run while generation goes on.
    Several endpoints (an EndpointPool) share the prompts, least busy first, and each row
    records the endpoint that answered it. Raises ServerGone when the server dies (the last
    of them); the rows already written stay in the ledger. On Ctrl-C no new prompt is sent,
    and the answers in flight are still written as they arrive (finish_in_flight).
    """
    pool = endpoint if isinstance(endpoint, EndpointPool) else EndpointPool([endpoint])
    todo: queue.Queue[tuple[Prompt, int]] = queue.Queue()
    results: queue.Queue[tuple[dict | None, BaseException | None]] = queue.Queue()
    too_long = too_long or {}
    for epoch in range(1, epochs + 1):
        for prompt in suite.prompts:
            if (prompt.id, epoch) in done:
                continue
            if prompt.id in too_long:  # never sent: its row is ready
                results.put((too_long_row(prompt, epoch, *too_long[prompt.id]), None))
            else:
                todo.put((prompt, epoch))
    total = todo.qsize() + results.qsize()
    to_test: queue.Queue[tuple[Prompt, dict]] = queue.Queue()
    stop = threading.Event()  # every thread ends
    stop_asking = threading.Event()  # no new request; those in flight and their tests finish
    asked = [0]  # requests sent (under `lock`), so a stop knows how many answers are owed
    lock = threading.Lock()

    def worker() -> None:
        while not stop_asking.is_set():
            try:
                with lock:
                    prompt, epoch = todo.get_nowait()
                    asked[0] += 1
            except queue.Empty:
                return
            try:
                row, answered_by = pool.ask(
                    lambda e, prompt=prompt, epoch=epoch: ask(suite, prompt, e, sampling, epoch)
                )
                row["endpoint"] = answered_by
                if needs_tests(suite, prompt, row):
                    to_test.put((prompt, row))
                else:
                    results.put((finish_row(suite, prompt, row), None))
            except BaseException as error:  # handed to the main thread, which decides
                results.put((None, error))

    def tester() -> None:
        while not stop.is_set():
            try:
                prompt, row = to_test.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                results.put((finish_row(suite, prompt, row), None))
            except BaseException as error:
                results.put((None, error))

    # Daemon threads: a second Ctrl-C must not wait for requests in flight or tests running.
    for _ in range(max(1, min(concurrency, todo.qsize()))):
        threading.Thread(target=worker, daemon=True).start()
    if suite.exec_tests and any(prompt.expect_tests for prompt in suite.prompts):
        for _ in range(tests_workers()):
            threading.Thread(target=tester, daemon=True).start()

    rows: list[dict] = []
    progress = eval_progress(total)
    received = 0  # results taken off the queue, written or raised
    taken: dict | None = None  # a row off the queue whose write a Ctrl-C may have cut short
    try:
        while received < total:
            try:
                taken, error = results.get(timeout=0.2)
            except queue.Empty:
                progress.tick()
                continue
            received += 1
            if error is not None:
                raise error
            assert taken is not None
            run.add_eval_result(taken)
            rows.append(taken)
            taken = None
            progress.update(failed=rows[-1].get("error") is not None)
    except KeyboardInterrupt:
        stop_asking.set()
        if taken is not None:
            run.add_eval_result(taken, ignore=True)
        with lock:
            owed = asked[0] - received
        finish_in_flight(run, results, owed, DEFAULTS.stop_grace_s)
        raise
    finally:
        stop_asking.set()
        stop.set()
        pool.closed.set()
        progress.close()
    return rows


def finish_in_flight(run: Run, results: queue.Queue, owed: int, grace_s: float) -> None:
    """After Ctrl-C: write the `owed` answers still in flight as they arrive, for up to
    `grace_s` seconds; a second Ctrl-C, or the server dying, stops the wait at once."""
    if owed <= 0:
        return
    print(
        f"stopping: writing the {owed} answer{'s' if owed != 1 else ''} in flight as they "
        f"arrive (up to {grace_s:g} s; Ctrl-C again to stop now)",
        file=sys.stderr,
        flush=True,
    )
    deadline = time.monotonic() + grace_s
    try:
        while owed > 0 and time.monotonic() < deadline:
            try:
                row, error = results.get(timeout=0.2)
            except queue.Empty:
                continue
            owed -= 1
            if isinstance(error, ServerGone):
                return
            if row is not None:
                run.add_eval_result(row, ignore=True)
    except KeyboardInterrupt:
        return

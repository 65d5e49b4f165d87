import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import PROCESS_TAG

from labbench.core.paths import INVOCATION_DIR_ENV


def pytest_configure(config) -> None:
    """Under pytest-xdist, build models/tiny before the workers start: otherwise whichever
    test first runs a script on the default model builds it (the others wait on its lock), and
    that test's output gains the build's announcement."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from labbench.tiny.tinymodel import ensure_tiny_model

        ensure_tiny_model()


@pytest.fixture(autouse=True)
def isolated_ledger(tmp_path, monkeypatch) -> Path:
    """Every test gets its own ledger (and so its own journal/ beside it), and scripts it runs
    see no `just` around them, whatever ran pytest (`just test` exports the user's directory)."""
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("LEDGER_DB", str(ledger))
    monkeypatch.delenv(INVOCATION_DIR_ENV, raising=False)
    return ledger


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The built-in tiny model, built once (it is cached in models/tiny like a user's)."""
    from labbench.tiny.tinymodel import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def tiny_server(tiny_model):
    """One mlx_lm server of the tiny model, shared by the tests that only send it requests
    (none stops, kills or restarts it): started once per session, or per pytest-xdist worker."""
    from labbench.serving.server import start_server

    with start_server(str(tiny_model)) as server:
        yield server


@pytest.fixture
def process_tag(monkeypatch) -> str:
    """Tag every process this test starts (scripts, and the servers they start), so that
    helpers.tagged_processes() finds this test's processes and no one else's. Module and
    session fixtures are set up before it, so a shared server carries no test's tag."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(PROCESS_TAG, value)
    return value


@dataclass
class Background:
    """Threads a test starts, which end with the test: each gets `stop` to wait on, and
    teardown sets it, joins them all and raises what any of them raised."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def start(self, target: Callable[[], None], name: str = "") -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as error:  # raised again in the test's teardown
                self.errors.append(error)

        thread = threading.Thread(target=guarded, name=name or repr(target), daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def join(self, timeout: float = 60) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
        alive = [thread.name for thread in self.threads if thread.is_alive()]
        assert not alive, f"threads still running after the test: {alive}"
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def background():
    """Start a test's helper threads with `background.start(fn)`; they end with the test."""
    threads = Background()
    yield threads
    threads.join()


# --- `slow` says why -----------------------------------------------------------------------


def slow_reason(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("slow")
    if mark is None:
        return None
    if len(mark.args) != 1 or not isinstance(mark.args[0], str) or mark.kwargs:
        raise pytest.UsageError(
            f"{item.nodeid}: say in one line what real process it needs, "
            '@pytest.mark.slow("a tiny-model server")'
        )
    return mark.args[0]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under pytest-xdist a collection hook's error only stops the worker, unexplained: the
    test with a bare `slow` fails here instead, saying why."""
    try:
        slow_reason(item)
    except pytest.UsageError as error:
        pytest.fail(str(error), pytrace=False)


# The longest test file, started first: under pytest-xdist the other worker runs the rest
# beside it, instead of it running alone at the end. xdist hands out files in collection order
# only with --no-loadscope-reorder (just test passes it); by default it sends the files with
# the most tests first, and this one-test file came last (seen beside two CPU hogs: the demo
# alone for 19 of the run's 35 minutes).
FIRST = "test_demo.py"


def pytest_collection_modifyitems(config, items) -> None:
    if not hasattr(config, "workerinput"):  # a worker's test fails at its setup instead
        for item in items:
            slow_reason(item)  # a bare `slow` is refused before anything runs
    items.sort(key=lambda item: item.path.name != FIRST)  # stable: the rest keep their order


def pytest_deselected(items) -> None:
    """Remember what `-m "not slow"` left out, for the summary."""
    for item in items:
        try:
            left_out[slow_reason(item) or ""] += 1
        except pytest.UsageError:
            left_out["(a bare `slow` mark: say what real process the test needs)"] += 1
    left_out.pop("", None)


left_out: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter) -> None:
    """`just test-fast` ends saying which real processes the tests it left out need."""
    if left_out and "slow" in terminalreporter.config.option.markexpr:
        terminalreporter.section("left out: slow tests, by the real process they need")
        for reason, count in left_out.most_common():
            terminalreporter.write_line(f"{count:4d}  {reason}")

"""A fault matrix under test: for each fault, the exit code, the run status, the results kept,
the one-line error and that no process is left behind.

Every process a test starts carries a tag in its environment (servers inherit it), so "nothing
is left" means no live process with this test's tag, whatever other tests run beside it.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import (
    HANG_S,
    NO_WAIT_S,
    assert_nothing_left,
    communicate,
    fail_hung,
    pid_alive,
    run_script,
    small_suite_toml,
    tagged_processes,
    wait_for,
)
from sqlite_utils import Database
from test_datasette import browsing, get_json, stop

from labbench import PROJECT_ROOT
from labbench.data.dummydata import write_dummy_data
from labbench.record.ledger import open_ledger
from labbench.serving.server import free_port

pytestmark = [
    pytest.mark.slow("scripts with their servers, training and Datasette, each stopped by a fault"),
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("process_tag"),  # every process a test starts carries its tag
]

SERVER = "mlx_lm server"  # how an mlx_lm.server process shows in `ps`

SMALL_SUITE = small_suite_toml(max_tokens=8)
SMALL_PROMPTS = ["math", "read"]

# Line 5 leaves a string open.
SUITE_WITH_BAD_TOML = """name = "broken"
[[prompts]]
id = "a"
category = "reasoning"
prompt = "What is 6 times 7?
expect_answer = "42"
"""
SUITE_EXPECTING_NOTHING = """name = "lax"
[[prompts]]
id = "a"
category = "reasoning"
prompt = "What is 6 times 7?"
"""


# --- processes -------------------------------------------------------------------------------


def start(name: str, *args: str, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / f"{name}.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        start_new_session=new_session,  # its own process group, as a terminal's job is
    )


def run_watched(
    name: str, *args: str, timeout: float = HANG_S
) -> tuple[subprocess.CompletedProcess, list[str], float]:
    """Run a script, sampling the process table meanwhile: (result, servers seen, seconds)."""
    started = time.monotonic()
    process = start(name, *args)
    servers: set[str] = set()
    while True:
        try:
            stdout, stderr = process.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            servers.update(line for line in tagged_processes() if SERVER in line)
            if time.monotonic() - started > timeout:
                fail_hung(process, timeout)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return result, sorted(servers), time.monotonic() - started


def error_line(stderr: str) -> str:
    """The one `error: ` line, which must be the last line, with no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), stderr
    assert [line for line in lines if line.startswith("error: ")] == [lines[-1]], stderr
    return lines[-1]


# --- ledgers and inputs ----------------------------------------------------------------------


def runs(ledger: Path) -> list[dict]:
    """The runs in a ledger; none when the file or its tables do not exist."""
    if not ledger.is_file():
        return []
    db = Database(ledger)
    return list(db.query("SELECT * FROM runs ORDER BY id")) if "runs" in db.table_names() else []


def results(ledger: Path, run_id: int) -> list[str]:
    sql = "SELECT prompt_id FROM eval_results WHERE run_id = ? ORDER BY prompt_id"
    return [row["prompt_id"] for row in Database(ledger).query(sql, [run_id])]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suites") / "small.toml"
    path.write_text(SMALL_SUITE)
    return path


@pytest.fixture(scope="module")
def real_ledger(tiny_model, small_suite, tmp_path_factory) -> Path:
    """A ledger written by one real eval (run 1, ok), checkpointed into the one file."""
    ledger = tmp_path_factory.mktemp("real") / "ledger.db"
    result = run_script("eval", f"suite={small_suite}", "--ledger", str(ledger))
    assert result.returncode == 0, result.stderr
    connection = sqlite3.connect(ledger)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    assert not Path(f"{ledger}-wal").exists() or Path(f"{ledger}-wal").stat().st_size == 0
    return ledger


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data") / "dummy"
    write_dummy_data(data, 40, seed=0)
    return data


@contextmanager
def immutable(path: Path) -> Generator[Path, None, None]:
    """`chattr +i`: read-only even for root; always undone, or tmp cleanup breaks."""
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    try:
        if made.returncode != 0:
            pytest.skip(f"chattr +i does not work here: {made.stderr.strip()}")
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def corrupt_copy(real: Path, to: Path) -> Path:
    """A real ledger with garbage over two whole pages in its middle (header and schema kept)."""
    data = bytearray(real.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the page size, from the SQLite header
    middle = len(data) // page // 2 * page
    assert middle >= page, "the ledger is too small to corrupt its middle"
    data[middle : middle + 2 * page] = b"\xde\xad\xbe\xef" * (2 * page // 4)
    to.write_bytes(bytes(data))
    return to


# --- refused at the door: one line, no run, no server ------------------------------------------

DOORS = [
    "missing model",
    "corrupt ledger",
    "text file as ledger",
    "read-only ledger",
    "ledger is a directory",
    "ledger in a read-only directory",
]


@pytest.fixture
def door(
    request, tmp_path, real_ledger
) -> Generator[tuple[list[str], Path, list[str]], None, None]:
    """(eval arguments, ledger, words the error line must hold) for one refused eval."""
    name = request.param
    ledger = tmp_path / "ledger.db"
    if name == "missing model":
        assert (PROJECT_ROOT / "models").is_dir()  # so the path is clearly a local one
        yield (
            ["model=models/does-not-exist"],
            ledger,
            ["models/does-not-exist", "no such directory"],
        )
    elif name == "corrupt ledger":
        corrupt_copy(real_ledger, ledger)
        yield ["--ledger", str(ledger)], ledger, [str(ledger), "not a SQLite database|corrupt"]
    elif name == "text file as ledger":
        ledger.write_text("runs: 1 ok, 2 failed\n")
        yield ["--ledger", str(ledger)], ledger, [str(ledger), "not a SQLite database|corrupt"]
    elif name == "read-only ledger":
        shutil.copyfile(real_ledger, ledger)
        with immutable(ledger):
            yield ["--ledger", str(ledger)], ledger, [str(ledger), "read-only"]
    elif name == "ledger is a directory":
        ledger.mkdir()
        yield ["--ledger", str(ledger)], ledger, [str(ledger), "is a directory"]
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        with immutable(locked):
            yield ["--ledger", str(locked / "ledger.db")], locked / "ledger.db", [str(locked)]


@pytest.mark.parametrize("door", DOORS, indirect=True)
def test_eval_refused_at_the_door(door, small_suite, tiny_model):
    args, ledger, words = door
    before = sha256(ledger) if ledger.is_file() else None
    result, servers, seconds = run_watched("eval", f"suite={small_suite}", *args)
    assert result.returncode == 1, result.stderr
    line = error_line(result.stderr)
    for word in words:
        assert any(alternative in line for alternative in word.split("|")), (word, line)
    assert servers == [], "no server may start before the inputs are known to be good"
    assert seconds < NO_WAIT_S
    if before is None:
        assert runs(ledger) == []
    else:
        assert sha256(ledger) == before, "a refused eval must not touch the ledger"
    assert_nothing_left()


@pytest.mark.parametrize("kind", ["garbage pages", "text file"])
def test_journal_refuses_a_corrupt_ledger(kind, real_ledger, tmp_path):
    ledger = tmp_path / "ledger.db"
    if kind == "garbage pages":
        corrupt_copy(real_ledger, ledger)
    else:
        ledger.write_text("runs: 1 ok, 2 failed\n")
    before = sha256(ledger)
    result = run_script("journal", "--ledger", str(ledger))
    assert result.returncode == 1, result.stderr
    line = error_line(result.stderr)
    assert str(ledger) in line and ("not a SQLite database" in line or "corrupt" in line), line
    assert sha256(ledger) == before
    assert not (tmp_path / "journal" / "JOURNAL.md").exists()


@pytest.mark.parametrize("reader", ["compare", "journal --out"])
def test_a_read_only_ledger_can_still_be_read(reader, real_ledger, tmp_path):
    ledger = tmp_path / "ro" / "ledger.db"
    ledger.parent.mkdir()
    shutil.copyfile(real_ledger, ledger)
    before = sha256(ledger)
    elsewhere = tmp_path / "elsewhere"
    with immutable(ledger):
        if reader == "compare":
            result = run_script("compare", "1", "1", "--ledger", str(ledger))
        else:
            result = run_script("journal", "--ledger", str(ledger), "--out", str(elsewhere))
    assert result.returncode == 0, result.stderr
    if reader == "compare":
        assert "verdict: no significant difference" in result.stdout
    else:
        assert "### Run 1: Eval" in (elsewhere / "JOURNAL.md").read_text()
    assert sha256(ledger) == before


# --- bad input files: one line naming the file, no run -----------------------------------------


def bad_suite(text: str) -> Callable[[Path, Path], tuple[list[str], str]]:
    def make(tmp_path: Path, dataset: Path) -> tuple[list[str], str]:
        suite = tmp_path / "suite.toml"
        suite.write_text(text)
        return ["eval", f"suite={suite}"], str(suite)

    return make


def bad_dataset_line(tmp_path: Path, dataset: Path) -> tuple[list[str], str]:
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    lines = (data / "train.jsonl").read_text().splitlines(keepends=True)
    lines[2] = '{"messages": [not json\n'
    (data / "train.jsonl").write_text("".join(lines))
    return ["train", f"data={data}", "iters=2"], f"{data / 'train.jsonl'}:3: "


@pytest.mark.parametrize(
    "make, codes, words",
    [
        (bad_suite(SUITE_WITH_BAD_TOML), (1, 2), ["line 5"]),
        (bad_suite(SUITE_EXPECTING_NOTHING), (1, 2), ["expect"]),
        (bad_dataset_line, (1,), []),
    ],
    ids=["suite with a TOML syntax error", "suite prompt expecting nothing", "dataset line 3"],
)
def test_bad_input_file_is_one_line_naming_it(
    make, codes, words, tmp_path, dataset, tiny_model, isolated_ledger
):
    (script, *args), where = make(tmp_path, dataset)
    result, servers, _ = run_watched(script, *args)
    assert result.returncode in codes, result.stderr
    line = error_line(result.stderr)
    assert where in line, line
    for word in words:
        assert word in line, line
    assert servers == []
    assert runs(isolated_ledger) == []
    assert_nothing_left()


# --- no server to talk to: refused at the door, or a failed run naming why --------------------


@pytest.mark.parametrize("target", ["taken port", "unreachable url"])
def test_eval_without_a_server_to_talk_to(target, small_suite, tiny_model, isolated_ledger):
    with socket.socket() as other:  # another program's listener
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        url = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on
        args, named = {
            "taken port": ([f"port={taken}"], f"port {taken}"),
            "unreachable url": ([f"url={url}"], url),
        }[target]
        result, _, seconds = run_watched("eval", f"suite={small_suite}", *args)
    assert result.returncode == 1, result.stderr
    assert named in error_line(result.stderr)
    assert seconds < NO_WAIT_S
    if target == "taken port":  # checkable before the run starts: refused before the ledger opens
        assert runs(isolated_ledger) == []
    else:  # only found out by trying: a failed run that says why
        [run] = runs(isolated_ledger)
        assert run["status"] == "failed" and named in run["error"]
        assert results(isolated_ledger, run["id"]) == []
    assert_nothing_left()


# --- stopped midway: what was recorded is kept ----------------------------------------------


def server_and_results(ledger: Path) -> tuple[int, int] | None:
    """(server pid, results so far) once the eval's server answers and a result is recorded."""
    try:
        [run] = runs(ledger)
        config = json.loads(run["config"])
        kept = len(results(ledger, run["id"]))
    except (ValueError, sqlite3.OperationalError):  # not there yet, or the eval holds a lock
        return None
    return (config["server_pid"], kept) if "server_pid" in config and kept >= 1 else None


@pytest.mark.parametrize(
    "fault, code, status",
    [("SIGKILL the server", 1, "failed"), ("Ctrl-C", 130, "interrupted")],
)
def test_eval_stopped_midway_keeps_what_it_recorded(
    fault, code, status, tiny_model, isolated_ledger
):
    # One request at a time and long answers: the baseline suite takes far longer than this.
    process = start("eval", "concurrency=1", "max_tokens=512", new_session=True)
    try:
        server_pid, kept_before = wait_for(
            lambda: server_and_results(isolated_ledger), "its server and a result"
        )
        if fault == "SIGKILL the server":
            os.kill(server_pid, signal.SIGKILL)
        else:
            os.killpg(process.pid, signal.SIGINT)  # the whole job, as a terminal's Ctrl-C does
        _, stderr = communicate(process)
    finally:
        stop(process, signal.SIGKILL)
    assert process.returncode == code, stderr
    [run] = runs(isolated_ledger)
    assert run["status"] == status
    kept = len(results(isolated_ledger, run["id"]))
    assert kept >= kept_before >= 1
    if fault == "SIGKILL the server":
        line = error_line(stderr)
        assert "server" in line and "server" in run["error"], (line, run["error"])
        assert f"kept {kept} of" in line
    else:
        assert "Traceback" not in stderr, stderr
    assert not pid_alive(server_pid)
    assert_nothing_left()


USABLE_ADAPTER = """
import sys
import mlx.core as mx
from mlx_lm import load
load(sys.argv[1], adapter_path=sys.argv[2])
print(sum("lora" in key for key in mx.load(sys.argv[2] + "/adapters.safetensors")))
"""


@pytest.mark.timeout(600)
def test_sigterm_mid_train_leaves_a_usable_adapter(tiny_model, dataset, isolated_ledger):
    adapter = isolated_ledger.parent / "adapters" / "1"
    process = start(
        "train",
        f"data={dataset}",
        *["iters=1000", "save_every=1", "steps_per_report=1", "batch_size=1"],
        *["val_batches=1", "steps_per_eval=1000"],
    )
    try:
        # mlx-lm writes NNNNNNN_adapters.safetensors right after adapters.safetensors.
        wait_for(
            lambda: list(adapter.glob("*_adapters.safetensors")) or process.poll() is not None,
            "a checkpoint of the training",
        )
        assert process.poll() is None, process.communicate()
        process.terminate()
        _, stderr = communicate(process)
    finally:
        stop(process, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    [run] = runs(isolated_ledger)
    assert run["kind"] == "train" and run["status"] == "interrupted"
    assert run["adapter"] == str(adapter)
    losses = Database(isolated_ledger).query(
        "SELECT loss FROM train_reports WHERE run_id = ? AND split = 'train'", [run["id"]]
    )
    assert [row["loss"] for row in losses if row["loss"] is not None]
    usable = subprocess.run(
        [sys.executable, "-c", USABLE_ADAPTER, str(tiny_model), str(adapter)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert usable.returncode == 0, usable.stderr
    assert int(usable.stdout.strip().splitlines()[-1]) > 0, "no LoRA weights in the adapter"
    assert_nothing_left()


# --- sharing the ledger -------------------------------------------------------------------------


def test_two_evals_write_one_ledger_at_once(small_suite, tiny_model, isolated_ledger):
    # A fresh ledger, so both also create and migrate it at the same moment.
    both = [start("eval", f"suite={small_suite}") for _ in range(2)]
    try:
        outputs = [communicate(process) for process in both]
    finally:
        for process in both:
            stop(process, signal.SIGKILL)
    for process, (_, stderr) in zip(both, outputs, strict=True):
        assert process.returncode == 0, stderr
    recorded = runs(isolated_ledger)
    assert [run["status"] for run in recorded] == ["ok", "ok"]
    assert len({run["id"] for run in recorded}) == 2
    for run in recorded:
        assert results(isolated_ledger, run["id"]) == SMALL_PROMPTS
    assert_nothing_left()


def test_datasette_open_while_an_eval_writes(small_suite, tiny_model, isolated_ledger):
    open_ledger(isolated_ledger).close()  # browse needs an existing ledger
    with browsing("--ledger", str(isolated_ledger)) as (base, browser):
        api = f"{base}/ledger"
        assert get_json(f"{api}/runs.json?_shape=array") == []
        writer = start("eval", f"suite={small_suite}")
        try:
            polls = 0
            while writer.poll() is None:
                get_json(f"{api}/runs.json?_shape=array")
                polls += 1
                time.sleep(0.2)
            _, stderr = communicate(writer)
        finally:
            stop(writer, signal.SIGKILL)
        assert writer.returncode == 0, stderr
        assert polls >= 1
        [run] = get_json(f"{api}/runs.json?_shape=array")
        assert run["status"] == "ok"
        shown = get_json(f"{api}/eval_results.json?_shape=array&run_id={run['id']}")
        assert sorted(row["prompt_id"] for row in shown) == SMALL_PROMPTS
        _, browse_stderr = stop(browser)
    assert browser.returncode == 0 and "Traceback" not in browse_stderr, browse_stderr
    assert_nothing_left()

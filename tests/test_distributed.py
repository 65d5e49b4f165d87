"""Data-parallel training through mlx.launch: 2 ranks on loopback against one process."""

import json
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import run_main, write_echo_dataset

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.record.fingerprint import dataset_fingerprint
from labbench.record.ledger import open_ledger
from labbench.serving.server import free_port
from labbench.train.distributed import (
    RANK_SCRIPT,
    STATUS_MARKER,
    Launch,
    check_batch,
    check_ring_ports,
    plan_launch,
    rank_failures,
    read_statuses,
    run_ranks,
)
from labbench.train.training import ADAPTER_WEIGHTS, TrainPlan, record_training

SETTINGS = LoraSettings(
    iters=3, batch_size=2, steps_per_report=1, steps_per_eval=100, val_batches=1, save_every=3
)


# --- pure logic ----------------------------------------------------------------------------


def test_plan_launch_reads_np_and_hostfiles(tmp_path):
    assert plan_launch(None, None, None, None) is None
    assert plan_launch(1, None, None, None) is None
    two = plan_launch(2, None, None, 40000)
    assert two == Launch(2, "ring", None, ("127.0.0.1", "127.0.0.1"), 40000)
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(
        json.dumps({"backend": "ring", "hosts": [{"ssh": "mac1", "ips": ["10.0.0.1"]}] * 2})
    )
    from_file = plan_launch(None, hostfile, None, None)
    assert from_file is not None and from_file.world_size == 2
    assert from_file.config()["hosts"] == ["mac1", "mac1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON"),
        ('{"hosts": []}', 'the "hosts" list is empty: name one host per rank'),
        ('{"hosts": [{"ips": ["1.2.3.4"]}]}', 'host 0 has no "ssh" name'),
        ('{"backend": "nccl", "hosts": [{"ssh": "a"}]}', "backend 'nccl' is not one of"),
    ],
)
def test_bad_hostfiles_are_one_line_errors(tmp_path, content, message):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(content)
    with pytest.raises(UserError, match=message):
        plan_launch(None, hostfile, None, None)


def test_bad_launches_are_refused(tmp_path):
    with pytest.raises(UserError, match="give one"):
        plan_launch(2, tmp_path / "hosts.json", None, None)
    with pytest.raises(UserError, match="--backend jaccl"):
        plan_launch(2, None, "jaccl", None)
    with pytest.raises(UserError, match="does not divide by the 2 ranks"):
        check_batch(3, Launch(2))
    check_batch(4, Launch(2))


def test_a_taken_ring_port_is_refused_before_the_launch(tmp_path, isolated_ledger):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first = taken.getsockname()[1] - 1  # rank 1's port: rank 0 listens on the one before
        launch = plan_launch(2, None, None, first)
        assert launch is not None
        with pytest.raises(UserError) as raised:
            check_ring_ports(launch)
        assert str(raised.value) == (
            f"port {first + 1} on 127.0.0.1 is already in use: the ring backend's ranks listen"
            f" on ports {first}-{first + 1} (pass port=N for others)"
        )
        # `just train np=2`: one line, before the ledger is opened
        result = run_main("train", "np=2", f"port={first}", f"data={tmp_path}")
    assert result.returncode == 1
    assert result.stderr == f"error: {raised.value}\n"
    assert not isolated_ledger.exists()
    # Hosts other than 127.0.0.1 run elsewhere: their ports are not ours to check.
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps({"hosts": [{"ssh": "mac1", "ips": ["127.0.0.1"]}] * 2}))
    remote = plan_launch(None, hostfile, None, first)
    assert remote is not None
    check_ring_ports(remote)


def test_rank_failures_names_failed_and_silent_ranks():
    log = "\n".join(
        [
            "iter 1 loss 7.2",
            STATUS_MARKER + json.dumps({"rank": "0", "ok": True}),
            "some output" + STATUS_MARKER + json.dumps({"rank": "2", "ok": False, "error": "boom"}),
            STATUS_MARKER + '{"rank": "3", "ok": tr',  # cut short: as good as none
            STATUS_MARKER + json.dumps({"rank": "pid77", "ok": False, "error": "alone"}),
            STATUS_MARKER + json.dumps({"rank": "4", "ok": False, "stopped": True}),
        ]
    )
    statuses = read_statuses(log)
    assert sorted(statuses) == ["0", "2", "4", "pid77"]
    assert rank_failures(statuses, 5) == [
        "rank 1: left no status (it crashed or never started)",
        "rank 2: boom",
        "rank 3: left no status (it crashed or never started)",
        "a rank outside the launch (pid77): alone",
        "rank 4: stopped",
    ]
    assert rank_failures({"0": {"ok": True}, "1": {"ok": True}}, 2) == []


# --- the real thing ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Examples of one length: mlx-lm averages the ranks' mean losses, which equals the whole
    batch's mean loss only when the ranks' shares hold as many tokens."""
    return write_echo_dataset(tmp_path_factory.mktemp("data"), train=12)


def train(tmp_path: Path, model: Path, data: Path, launch: Launch | None, name: str):
    ledger = tmp_path / f"{name}.db"
    db = open_ledger(ledger)
    plan = TrainPlan(
        model=str(model),
        data=data,
        data_fingerprint=dataset_fingerprint(data),
        settings=SETTINGS,
        adapters_root=tmp_path / f"{name}-adapters",
        launch=launch,
    )
    return db, plan


@pytest.fixture(scope="module")
def two_runs(tiny_model, dataset, tmp_path_factory):
    """The same training once in this process and once on 2 ranks (same global batch)."""
    root = tmp_path_factory.mktemp("runs")
    db1, plan1 = train(root, tiny_model, dataset, None, "single")
    single = record_training(db1, plan1)
    db2, plan2 = train(root, tiny_model, dataset, Launch(2, port=free_port()), "ranks")
    ranks = record_training(db2, plan2)
    return db1, single, db2, ranks


def weights(path: Path) -> dict[str, np.ndarray]:
    import mlx.core as mx

    loaded = mx.load(str(path))
    assert isinstance(loaded, dict)
    return {key: np.array(value) for key, value in loaded.items()}


@pytest.mark.slow("2 training ranks (mlx.launch) and a training in this process")
@pytest.mark.timeout(600)
def test_two_ranks_record_one_run_and_match_one_process(two_runs):
    db1, single, db2, ranks = two_runs
    [run] = list(db2["runs"].rows)
    assert run["status"] == "ok", run["error"]
    assert json.loads(run["config"])["distributed"]["world_size"] == 2
    assert json.loads(run["config"])["distributed"]["backend"] == "ring"
    reports = list(db2.query("SELECT iteration, split, loss FROM train_reports ORDER BY id"))
    single_reports = list(db1.query("SELECT iteration, split, loss FROM train_reports ORDER BY id"))
    assert [(r["iteration"], r["split"]) for r in reports] == [
        (r["iteration"], r["split"]) for r in single_reports
    ]  # one set of rows, from rank 0 only
    # Train losses are averaged per rank (a mean of means), validation losses are not.
    for ours, theirs in zip(reports, single_reports, strict=True):
        if ours["split"] == "val":
            assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-4)
    statuses = read_statuses((ranks.adapter_dir / "launch" / "launch.log").read_text())
    assert sorted(statuses) == ["0", "1"]
    assert all(s["world_size"] == 2 and s["ok"] for s in statuses.values())
    a = weights(single.adapter_dir / ADAPTER_WEIGHTS)
    b = weights(ranks.adapter_dir / ADAPTER_WEIGHTS)
    assert sorted(a) == sorted(b) and a
    # Float sums in another order, which Adam can turn into part of a step (learning rate
    # 1e-4) where a gradient is near zero: 2.8e-5 here, 7.5e-6 measured on other data.
    worst = max(float(np.abs(a[key] - b[key]).max()) for key in a)
    assert worst < 5e-5, worst


@pytest.mark.slow("2 ranks started by mlx.launch's runner")
@pytest.mark.timeout(300)
def test_a_rank_that_comes_up_alone_fails_the_run(tmp_path, tiny_model, dataset):
    """What mpirun without its library does: the rank starts at world size 1, un-launched."""
    spec: dict = {"model": str(tiny_model), "data": str(dataset), "world_size": 2}
    spec |= {"settings": {}, "adapter_dir": str(tmp_path / "a"), "ledger": "", "run_id": 0}
    launch_dir = tmp_path / "launch"
    alone = [sys.executable, str(RANK_SCRIPT)]  # run_ranks adds the spec
    with pytest.raises(UserError) as raised:
        run_ranks(Launch(2), spec, launch_dir, command=alone)
    message = str(raised.value)
    assert "rank 0: left no status" in message
    assert "came up at world size 1, not 2: it would have trained alone" in message


@pytest.mark.slow("2 training ranks (mlx.launch), one unable to bind its port")
@pytest.mark.timeout(600)
def test_a_rank_that_cannot_bind_its_port_fails_the_run_in_one_line(
    tmp_path, tiny_model, dataset, capfd
):
    """The port taken after the check (another job got there first): the rank's own error, in
    one line, and no traceback or launcher warning on the terminal (both stay in the log)."""
    db, plan = train(tmp_path, tiny_model, dataset, None, "bind")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plan = replace(plan, launch=Launch(2, port=port))
        with pytest.raises(UserError) as raised:
            record_training(db, plan)
    log = plan.adapters_root / "1" / "launch" / "launch.log"
    message = str(raised.value)
    assert message.startswith(
        "rank 0: RuntimeError: [ring] Couldn't bind socket (error 98: Address already in use);"
        " rank 1: "
    ), message
    assert message.endswith(f" (launch log: {log})") and "\n" not in message
    [run] = list(db["runs"].rows)
    assert run["status"] == "failed" and run["error"] == message
    shown = capfd.readouterr().err
    assert "Traceback" not in shown and "[WARN]" not in shown, shown
    assert "Traceback (most recent call last)" in log.read_text()


@pytest.mark.slow("2 training ranks (mlx.launch), one of them killed")
@pytest.mark.timeout(600)
def test_a_crashed_rank_fails_the_run(tmp_path, tiny_model, dataset, background):
    iters = 2000
    db, plan = train(tmp_path, tiny_model, dataset, Launch(2, port=free_port()), "crash")
    plan = replace(plan, settings=LoraSettings(iters=iters, batch_size=2))
    launch_dir = plan.adapters_root / "1" / "launch"
    killed: list[int] = []

    def kill_rank_1() -> None:
        pid_file = launch_dir / "rank-1.pid"
        while not pid_file.exists():
            if background.stop.wait(0.1):
                return  # the test ended first; its failure says why
        if background.stop.wait(0.5):
            return
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    background.start(kill_rank_1, "kill_rank_1")
    with pytest.raises(UserError, match="rank 1: left no status"):
        record_training(db, plan)
    assert killed
    [run] = list(db["runs"].rows)
    assert run["status"] == "failed" and "rank 1" in run["error"]
    # Rank 0 was stopped, not left to train on (or to wait forever in its next all_sum).
    [last] = db.query("SELECT max(iteration) AS iteration FROM train_reports")
    assert (last["iteration"] or 0) < iters


def test_the_bench_reports_scaling_and_where_it_was_measured():
    from labbench.present.benchrows import scaling_rows
    from labbench.train.benchmark import scaling

    result = scaling({"sec_per_iter": 1.0}, {"sec_per_iter": 0.8}, Launch(2))
    assert result["speedup"] == pytest.approx(1.25)
    assert result["efficiency"] == pytest.approx(0.625)
    assert result["world_size"] == 2 and result["backend"] == "ring"
    assert "says nothing about several Macs" in result["where"]
    rows = dict(scaling_rows(result))
    assert rows["scaling efficiency"] == "62% (100% = 2x faster)"
    remote = scaling({"sec_per_iter": 1.0}, {"sec_per_iter": 0.5}, Launch(2, hosts=("m1", "m2")))
    assert remote["where"] == "2 ranks on m1, m2" and remote["efficiency"] == 1.0

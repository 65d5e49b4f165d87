"""`just fuse`: the quantization rules, the tokenizer check and the refusals (fast), then the
whole offline path on a 4-bit tiny model (slow): QLoRA, fuse with dequantization, verify."""

import json
import shutil
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from helpers import HANG_S, communicate, run_main, run_script, small_suite_toml
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.record.ledger import open_ledger, start_run
from labbench.train.fusemodel import plan_quantization, tokenizer_mismatches
from labbench.train.fuserun import verdict_text

TOKENIZER_ONLY = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def test_quantizing_below_5_bits_after_a_quantized_base_warns():
    warning = plan_quantization(base_bits=4, bits=4, dequantize=None).warning
    assert warning and warning.startswith("re-quantizing to 4 bits after fusing a 4-bit base")
    assert "\n" not in warning
    assert plan_quantization(base_bits=4, bits=5, dequantize=None).warning is None
    assert plan_quantization(base_bits=None, bits=4, dequantize=None).warning is None


def test_a_quantized_base_is_dequantized_unless_asked_not_to():
    assert plan_quantization(4, None, None).dequantize is True
    assert plan_quantization(None, 8, None).dequantize is False
    assert plan_quantization(4, None, False).dequantize is False  # kept quantized, not re-quantized


def test_quantizing_an_already_quantized_model_is_refused():
    with pytest.raises(UserError, match="already quantized \\(4-bit\\) and dequantize=false"):
        plan_quantization(base_bits=4, bits=8, dequantize=False)


def test_verdict_says_whether_the_fused_model_is_worse():
    same = [1.0, 0.0, 0.5, 1.0]
    assert verdict_text(same, same) == ("fused matches adapter", 1.0)
    verdict, p_value = verdict_text([1.0] * 12, [0.0] * 12)
    assert verdict == f"fused is worse (p = {p_value:.4f})" and p_value < 0.05
    partial = verdict_text([1.0, 0.5] * 10, [0.0, 0.0] * 10)[0]  # a bootstrap: p below 2/5000
    assert partial == "fused is worse (p < 0.0004)"


def test_tokenizer_check_finds_other_token_ids_and_template(tiny_model, tmp_path):
    base, fused = tmp_path / "base", tmp_path / "fused"
    for directory in (base, fused):
        directory.mkdir()
        for name in TOKENIZER_ONLY:
            shutil.copyfile(tiny_model / name, directory / name)
    assert tokenizer_mismatches(base, fused) == []
    config = json.loads((fused / "config.json").read_text())
    (fused / "config.json").write_text(json.dumps(config | {"eos_token_id": 151643}))
    (fused / "chat_template.jinja").write_text("{{ messages }}")
    problems = tokenizer_mismatches(base, fused)
    eos = config["eos_token_id"]
    assert problems[0] == f"config.json:eos_token_id is 151643, the base has {eos}"
    assert "the chat template differs from the base's" in problems
    assert "chat_template.jinja differs from the base's" in problems


def test_fusing_a_running_training_is_refused_unless_a_checkpoint_is_named(
    isolated_ledger, tiny_model
):
    db = open_ledger(isolated_ledger)
    adapter = isolated_ledger.parent / "adapters" / "1"
    adapter.mkdir(parents=True)
    run = start_run(db, "train", {"iters": 100}, model=str(tiny_model), adapter=str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({"model": str(tiny_model)}))
    (adapter / "adapters.safetensors").write_bytes(b"")
    (adapter / "0000050_adapters.safetensors").write_bytes(b"")  # saved by mlx-lm mid-run
    result = run_main("fuse", f"adapter={adapter}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: training run {run.id} that writes {adapter} is still")
    assert "checkpoint=N (saved: 50)" in result.stderr
    result = run_main("fuse", f"adapter={adapter}", "checkpoint=60")
    assert result.stderr == f"error: --checkpoint 60: not saved in {adapter} (50)\n"
    assert db.table("runs").count_where("kind = 'fuse'") == 0


def test_an_interrupted_trainings_adapter_is_the_checkpoint_it_holds(isolated_ledger):
    """Ctrl-C after iteration 20 of 30: adapters.safetensors is checkpoint 20's bytes, and
    the fuse records that iteration rather than none."""
    from labbench.record.ledger import finish_run
    from labbench.train.fuserun import choose_adapter

    db = open_ledger(isolated_ledger)
    adapter = isolated_ledger.parent / "adapters" / "1"
    for iteration, weights in ((10, b"ten"), (20, b"twenty")):
        (adapter / "checkpoints" / f"{iteration:07d}").mkdir(parents=True)
        (adapter / "checkpoints" / f"{iteration:07d}" / "adapters.safetensors").write_bytes(weights)
    (adapter / "adapter_config.json").write_text(json.dumps({"model": "m"}))
    (adapter / "adapters.safetensors").write_bytes(b"twenty")
    run = start_run(db, "train", {"iters": 30}, model="m", adapter=str(adapter))
    finish_run(run, "interrupted", "interrupted by the user (Ctrl-C or SIGTERM)")
    source = choose_adapter(db, adapter, None)
    assert (source.iteration, source.is_final) == (20, True)
    assert source.paths == [str(adapter), str(adapter / "checkpoints" / "0000020")]
    (adapter / "adapters.safetensors").write_bytes(b"other")  # matches no checkpoint
    assert choose_adapter(db, adapter, None).iteration is None


def test_verifying_a_checkpoint_that_cannot_be_evaluated_yet_is_refused_before_fusing(
    isolated_ledger, tiny_model
):
    db = open_ledger(isolated_ledger)
    adapter = isolated_ledger.parent / "adapters" / "1"
    adapter.mkdir(parents=True)
    start_run(db, "train", {"iters": 100}, model=str(tiny_model), adapter=str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({"model": str(tiny_model)}))
    (adapter / "0000050_adapters.safetensors").write_bytes(b"")  # mlx-lm's, training runs
    result = run_main("fuse", f"adapter={adapter}", "checkpoint=50", "verify=baseline")
    assert result.returncode == 1
    assert result.stderr == (
        "error: checkpoint 50 has no eval on baseline and its training still runs: verify once"
        " it has finished, or pass verify=none\n"
    )
    assert db.table("runs").count_where("kind = 'fuse'") == 0
    assert not (isolated_ledger.parent / "models").exists()  # nothing fused, nothing written


# --- the whole path, offline: 4-bit tiny model, QLoRA, fuse, verify ---------------------------


@pytest.fixture(scope="module")
def qlora(tmp_path_factory):
    """A 4-bit tiny model, a QLoRA adapter trained on it (2 iterations) and evaluated on a
    small suite, and an eval of the base alone, in one ledger shared by the tests below."""
    root = tmp_path_factory.mktemp("fuse")
    ledger = root / "ledger.db"
    suite = root / "small.toml"
    suite.write_text(small_suite_toml(max_tokens=6))
    base = root / "tiny-q4"
    steps = [
        ("tiny_model", "--quantize", "4", f"out={base}"),
        ("dummy_data", f"out={root / 'data'}", "n=24"),
        ("eval", f"model={base}", f"suite={suite}", f"ledger={ledger}"),
        ("train", f"model={base}", f"data={root / 'data'}", "iters=2", "save_every=2")
        + ("batch_size=1", "val_batches=1", f"eval_suite={suite}", f"ledger={ledger}"),
    ]
    for step in steps:
        result = run_script(*step)
        assert result.returncode == 0, result.stderr
    return {"root": root, "ledger": ledger, "base": base, "adapter": root / "adapters" / "2"}


def fuse(qlora, *args):
    return run_main("fuse", f"adapter={qlora['adapter']}", f"ledger={qlora['ledger']}", *args)


def fuse_row(qlora, output: str) -> dict:
    [row] = Database(qlora["ledger"]).query("SELECT * FROM fuses WHERE output = ?", [output])
    return row


def output_of(result) -> str:
    prefix = "fused model: "
    return next(line for line in result.stdout.splitlines() if line.startswith(prefix))[
        len(prefix) :
    ]


@pytest.mark.slow("LoRA training, fusing and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_fuse_without_quantization_scores_as_the_adapter(qlora):
    assert json.loads((qlora["base"] / "config.json").read_text())["quantization"]["bits"] == 4
    result = fuse(qlora)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "verdict: fused matches adapter"
    assert (result.stdout + result.stderr).count("verdict:") == 1  # said once
    out = Path(output_of(result))
    assert out.name == f"fused-{fuse_row(qlora, str(out))['fuse_run_id']}"
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    row = fuse_row(qlora, str(out))
    lineage = (row["train_run_id"], row["checkpoint"], row["base_bits"], row["bits"])
    assert lineage == (2, 2, 4, None) and row["adapter_eval_run_id"] == 3
    assert row["dequantized"] == 1 and "quantization" not in json.loads(
        (out / "config.json").read_text()
    )
    db = Database(qlora["ledger"])
    results = "SELECT prompt_id, score, response FROM eval_results WHERE run_id = ? ORDER BY 1"
    adapter_rows = list(db.query(results, [row["adapter_eval_run_id"]]))
    assert list(db.query(results, [row["fused_eval_run_id"]])) == adapter_rows
    # A fused model's eval is the base's derived model: Δ against the base's eval (run 1).
    [view] = db.query(
        "SELECT * FROM cumulative_results WHERE run_id = ?", [row["fused_eval_run_id"]]
    )
    assert (view["base_model"], view["baseline_run_id"]) == (str(qlora["base"]), 1)
    assert view["step"].endswith("Trained") and view["fused_train_run_id"] == 2
    assert view["dataset"] == db.table("runs").get(2)["dataset"]
    journal = (qlora["root"] / "journal" / "JOURNAL.md").read_text()
    assert f"| {out.name} (full precision, fused by #{row['fuse_run_id']}) |" in journal
    assert "| fused from adapters/2 (train #2, iteration 2) |" in journal
    assert "**Verdict:** fused matches adapter (eval #" in journal


@pytest.mark.slow("LoRA training, fusing and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_fuse_quantized_to_8_bits_keeps_the_tokenizer_and_records_a_verdict(qlora):
    # verify= as a path finds the adapter's eval of that suite (run 3), recorded by its name.
    result = fuse(qlora, "bits=8", f"verify={qlora['root'] / 'small.toml'}")
    assert result.returncode == 0, result.stderr
    out, base = Path(output_of(result)), qlora["base"]
    row = fuse_row(qlora, str(out))
    assert out.name.endswith("-q8") and (row["bits"], row["group_size"]) == (8, 64)
    assert row["verdict"] == result.stdout.splitlines()[-1].removeprefix("verdict: ")
    assert row["verdict"].startswith("fused ") and row["fused_eval_run_id"]
    assert (row["adapter_eval_run_id"], row["verify_suite"]) == (3, "small")
    config, base_config = (json.loads((d / "config.json").read_text()) for d in (out, base))
    for key in ("eos_token_id", "bos_token_id"):
        assert config.get(key) == base_config.get(key)
    assert config["quantization"]["bits"] == 8
    template = "chat_template.jinja"
    assert (out / template).read_text() == (base / template).read_text()
    # The fused model serves like any model: `just eval model=models/fused-N`.
    suite = qlora["root"] / "small.toml"
    result = run_script("eval", f"model={out}", f"suite={suite}", f"ledger={qlora['ledger']}")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow("LoRA training, fusing and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_fuse_to_4_bits_warns_and_records_the_warning(qlora):
    result = fuse(qlora, "bits=4", "verify=none")
    assert result.returncode == 0, result.stderr
    warning = "re-quantizing to 4 bits after fusing a 4-bit base: the reference project lost"
    assert f"\nwarning: {warning}" in result.stderr
    row = fuse_row(qlora, output_of(result))
    assert row["warning"].startswith(warning) and row["verdict"] == "not verified (verify=none)"
    journal = (qlora["root"] / "journal" / "JOURNAL.md").read_text()
    assert f"**Warning:** {row['warning']}" in journal


@pytest.mark.slow("LoRA training, fusing and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_fuse_refuses_to_quantize_a_quantized_base_without_dequantizing(qlora):
    fuses = Database(qlora["ledger"]).table("fuses").count
    result = fuse(qlora, "bits=8", "dequantize=false")
    assert result.returncode == 1
    assert "error: --bits 8: the base model is already quantized (4-bit)" in result.stderr
    assert Database(qlora["ledger"]).table("fuses").count == fuses


def query(ledger: Path, sql: str, params: list | None = None) -> list[dict]:
    """Rows read through a connection closed at once: one left open in this process can lose
    its locks when the ledger code here closes a file of its own, and another process's exit
    then removes the WAL under it."""
    with closing(Database(ledger).conn) as connection:
        return list(Database(connection).query(sql, params or []))


@pytest.fixture(scope="module")
def two_checkpoints(qlora):
    """A second adapter, trained without checkpoint evals and saved at iterations 1 and 2 (the
    final one), and an eval of its directory: the final weights'. Its own ledger, written only
    by the scripts run in their own processes (see query())."""
    root, base, suite = qlora["root"] / "two", qlora["base"], qlora["root"] / "small.toml"
    ledger = root / "ledger.db"
    train = ("train", f"model={base}", f"data={qlora['root'] / 'data'}", "iters=2")
    result = run_script(*train, "save_every=1", "batch_size=1", "val_batches=1", f"ledger={ledger}")
    assert result.returncode == 0, result.stderr
    adapter = root / "adapters" / "1"
    assert sorted(p.name for p in (adapter / "checkpoints").iterdir()) == ["0000001", "0000002"]
    evaluated = ("eval", f"model={base}", f"adapter={adapter}", f"suite={suite}")
    result = run_script(*evaluated, f"ledger={ledger}")
    assert result.returncode == 0, result.stderr
    return {"ledger": ledger, "adapter": adapter, "suite": suite}


@pytest.mark.slow("LoRA training, fusing and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_an_earlier_checkpoint_is_not_verified_against_the_final_adapters_eval(two_checkpoints):
    ledger, adapter = two_checkpoints["ledger"], two_checkpoints["adapter"]
    result = run_script("fuse", f"adapter={adapter}", "checkpoint=1", f"ledger={ledger}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "verdict: not verified: checkpoint 1 has no eval (pass verify=SUITE)"
    )
    [row] = query(ledger, "SELECT * FROM fuses WHERE output = ?", [output_of(result)])
    assert row["checkpoint"] == 1 and row["adapter_eval_run_id"] is None
    # The adapter directory's eval (run 2) was there to be taken, and was of iteration 2.
    assert query(ledger, "SELECT adapter FROM runs WHERE id = 2") == [{"adapter": str(adapter)}]


def fused_eval_started(ledger: Path) -> dict | None:
    rows = query(
        ledger,
        "SELECT fuse.id, fuse.summary FROM runs AS fuse JOIN runs AS eval"
        " ON eval.parent_run_id = fuse.id WHERE fuse.kind = 'fuse' AND fuse.status = 'running'"
        " AND eval.model = json_extract(fuse.summary, '$.output')",
    )
    return rows[0] if rows else None


def serving(parent: int, model: str) -> bool:
    """Whether a child of `parent` runs an mlx-lm server for `model` (forked and exec'd)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
        if ppid == parent and b"server" in command and model.encode() in command:
            return True
    return False


@pytest.mark.slow("LoRA training, fusing and a tiny-model server per eval")
@pytest.mark.timeout(600)
def test_a_fuse_interrupted_while_verifying_keeps_its_model_and_says_it_is_unverified(
    two_checkpoints,
):
    # The final checkpoint's weights are the adapter directory's: its eval is the reference.
    ledger = two_checkpoints["ledger"]
    fusing = [f"adapter={two_checkpoints['adapter']}", "checkpoint=2", f"ledger={ledger}"]
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "fuse.py"), *fusing],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        deadline = time.monotonic() + HANG_S
        while (started := fused_eval_started(ledger)) is None and process.poll() is None:
            assert time.monotonic() < deadline, "the fused model's eval never started"
            time.sleep(0.05)
        # Ctrl-C once its server was started, while it loads: a signal during the fork itself
        # can leave Python's logging lock held (an interpreter hazard, not this test's subject).
        output = json.loads(started["summary"])["output"] if started else ""
        while started and not serving(process.pid, output) and process.poll() is None:
            assert time.monotonic() < deadline, "the fused model's server never started"
            time.sleep(0.05)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = communicate(process)
    finally:
        process.kill()
    assert started is not None, stderr
    assert process.returncode == 130
    assert f"\n{output} kept, not verified (run interrupted)\n" in stderr
    assert (Path(output) / "config.json").is_file()
    [run] = query(ledger, "SELECT status FROM runs WHERE id = ?", [started["id"]])
    assert run["status"] == "interrupted"
    [row] = query(ledger, "SELECT * FROM fuses WHERE output = ?", [output])
    assert row["checkpoint"] == 2 and row["verdict"] is None and row["fused_eval_run_id"] is None
    # Compared with the adapter directory's eval: the fused model's eval took its suite file.
    [evaluated] = query(ledger, "SELECT config FROM runs WHERE parent_run_id = ?", [started["id"]])
    assert json.loads(evaluated["config"])["suite_path"] == str(two_checkpoints["suite"])
    journal = (ledger.parent / "journal" / "JOURNAL.md").read_text()
    entry = journal[journal.index(f"### Run {started['id']}: Fuse") :]
    assert "**Verdict:** not verified (run interrupted); `" in entry.split("### Run")[1]

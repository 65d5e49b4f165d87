"""The memory plan (labbench/train/memory/plan.py, memorycheck.py): its pure parts, the plan of
a 30B model from its config.json alone, and, against real LoRA training on the tiny models,
its accuracy, the refusal and its override, and the watchdog that stops a run at its ceiling.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_main, run_script
from sqlite_utils import Database

from labbench import PROJECT_ROOT
from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.data.dummydata import write_sized_chats
from labbench.machine.hardware import MachineMemory, machine_memory
from labbench.train.memory.check import (
    MemoryOptions,
    MemoryPlan,
    ceiling_value,
    check_training_memory,
    plan_memory,
    resolve_ceiling,
    size_bytes,
)
from labbench.train.memory.plan import (
    GB,
    ModelShape,
    Workload,
    model_shape,
    padded_length,
    predict,
    read_config,
)

QWEN3_CODER_30B = Path(__file__).parent / "fixtures" / "qwen3-coder-30b-a3b-instruct-4bit"


# --- pure parts ----------------------------------------------------------------------------

SHAPE = ModelShape(
    weights_bytes=4_000_000,
    quantization="none",
    trainable_params=80_000,
    trainable_bytes=320_000,
    element_bytes=4,
    vocab=1536,
    hidden=128,
    mlp_width=384,
    heads=2,
    blocks=4,
    adapted_blocks=4,
    lora_ranks=56,
)


def plan_of(work: Workload, ceiling: float, world_size: int = 1) -> MemoryPlan:
    """A plan of `work` per process, for a batch_size of world_size x its rows."""
    memory = MachineMemory(int(ceiling / 0.9), "available RAM")
    settings = LoraSettings(batch_size=work.batch_size * world_size)
    prediction = predict(SHAPE, work)
    return MemoryPlan(
        "m", SHAPE, work, prediction, memory, ceiling, world_size=world_size, settings=settings
    )


def test_sizes_and_ceilings_read_as_users_write_them():
    assert size_bytes("32GB") == 32e9 and size_bytes("500MB") == 500e6
    assert size_bytes("16GiB") == 16 * 2**30 and size_bytes("1.5") == 1.5e9
    assert ceiling_value("0.8") == 0.8 and ceiling_value("12GB") == 12e9
    for bad in ("lots", "-1GB", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            ceiling_value(bad)
    memory = MachineMemory(20_000_000_000, "available RAM")
    assert resolve_ceiling(0.5, memory) == 10e9 and resolve_ceiling(12e9, memory) == 12e9
    assert resolve_ceiling(0.5, None) is None  # unknown memory: nothing to check against


def test_mlx_lm_pads_a_batch_to_one_plus_a_multiple_of_32():
    assert padded_length(373, 2048) == 385 and padded_length(64, 2048) == 65
    assert padded_length(3000, 2048) == 2048


def test_activations_grow_with_batch_and_length_and_checkpointing_saves_them():
    base = predict(SHAPE, Workload(2, 257))
    assert predict(SHAPE, Workload(4, 257)).activations == pytest.approx(2 * base.activations)
    assert predict(SHAPE, Workload(2, 513)).activations > 2 * base.activations  # attention
    assert predict(SHAPE, Workload(2, 257, grad_checkpoint=True)).activations < base.activations
    assert base.weights == 4_000_000 and base.adapters == 4 * 320_000  # + gradient, Adam's m, v


def test_a_plan_that_does_not_fit_suggests_the_batch_or_length_that_would():
    work = Workload(8, 513)
    fits_at_batch_3 = predict(SHAPE, Workload(3, 513)).peak * 1.01
    plan = plan_of(work, fits_at_batch_3)
    assert not plan.fits and plan.suggestion() == "batch_size=3 would fit"
    refusal = plan.refusal()
    assert "\n" not in refusal and refusal.endswith(
        "batch_size=3 would fit (plan=force trains anyway)"
    )
    fits_at_128 = predict(SHAPE, Workload(1, 128)).peak * 1.01
    assert plan_of(work, fits_at_128).suggestion() == "batch_size=1 max_seq_length=128 would fit"
    assert plan_of(work, predict(SHAPE, work).peak).fits
    # np=2: each rank trains half the batch, so batch_size=6 (3 rows a rank) is what fits.
    assert plan_of(work, fits_at_batch_3, world_size=2).suggestion() == "batch_size=6 would fit"
    one_row_at_128 = plan_of(work, fits_at_128, world_size=2).suggestion()
    assert one_row_at_128 == "batch_size=2 max_seq_length=128 would fit"


def test_the_machine_memory_is_what_linux_has_available():
    memory = machine_memory()
    assert memory is not None and memory.bytes > 0
    assert memory.kind in ("available RAM", "unified memory", "RAM")


def test_a_hub_model_that_cannot_be_fetched_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as raised:
        read_config("mlx-community/no-such-model-4bit")
    message = str(raised.value)
    assert message.startswith("--model mlx-community/no-such-model-4bit: cannot fetch its ")
    assert "plan=force" in message and "\n" not in message
    settings = LoraSettings()
    with pytest.raises(UserError):  # plan=check: the run is refused with that line
        check_training_memory("mlx-community/no-such-model-4bit", settings, None, MemoryOptions())
    forced = MemoryOptions(plan="force")
    assert check_training_memory("mlx-community/no-such-model-4bit", settings, None, forced) is None
    assert capsys.readouterr().err.startswith(f"warning: no memory plan ({message}); plan=force")


def test_the_30b_moe_plan_comes_from_its_config_alone():
    """Qwen3-Coder-30B-A3B-Instruct-4bit: 48 blocks of 128 experts; mlx-lm quantizes the
    experts to 4 bits and the routers to 8. Nothing is read but config.json."""
    assert [p.name for p in QWEN3_CODER_30B.iterdir()] == ["config.json"]
    config = read_config(str(QWEN3_CODER_30B))
    shape = model_shape(config, rank=8, num_layers=8, keys=None)
    # 30.5 B weights at 4 bits plus a bf16 scale and bias per 64: about 4.5 bits a weight.
    assert 16.5 * GB < shape.weights_bytes < 18 * GB
    assert shape.quantization == "mixed 4/8-bit" and (shape.blocks, shape.adapted_blocks) == (48, 8)
    assert shape.mlp_width == 8 * 768 and shape.element_bytes == 2  # 8 experts a token, bf16
    # LoRA on every expert: 128 x rank x (in + out) for gate, up and down, per adapted block.
    experts = 128 * 8 * ((2048 + 768) * 2 + (768 + 2048))
    dense = 8 * ((2048 + 4096) * 2 + (2048 + 512) * 2) + 8 * (2048 + 128)
    assert shape.trainable_params == 8 * (experts + dense)  # dense: attention and router


# --- against real training -----------------------------------------------------------------


@pytest.mark.slow("trains the tiny models 8 times, 2 iterations each, in one process")
@pytest.mark.timeout(900)
def test_the_predicted_peak_is_within_20_percent_of_mlx_measured_peak(tiny_model):
    """`just bench-memory`: eight trainings of the tiny model and its 4-bit quantization."""
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench_memory.py"), "--json"],
        capture_output=True, text=True, timeout=880, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 8
    for setting in ("model", "batch_size", "max_seq_length", "rank", "layers", "grad_checkpoint"):
        assert len({row[setting] for row in rows}) >= 2, f"{setting} is never varied"
    for row in rows:
        assert row["predicted_gb"] > 0 and row["measured_gb"] > 0
        assert abs(row["measured_gb"] / row["predicted_gb"] - 1) <= 0.2, row


@pytest.mark.slow("runs scripts/bench.py (imports mlx-lm; loads nothing)")
@pytest.mark.timeout(120)
def test_plan_only_answers_the_reference_journals_question_from_config_json(isolated_ledger):
    """Is LoRA on Qwen3-Coder-30B-A3B-Instruct-4bit feasible on an M1 with 32 GB?"""
    result = run_script("bench", f"model={QWEN3_CODER_30B}", "plan=only", "memory=32GB")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"memory plan for {QWEN3_CODER_30B}, mixed 4/8-bit:"
    assert lines[1].split() == ["weights", "17.18", "GB"]
    assert (
        "  against      32.00 GB unified memory (memory=), ceiling 24.00 GB: does NOT fit" in lines
    )
    assert lines[-1].endswith("would fit")  # what would: fewer layers, batch 1, shorter rows
    assert not isolated_ledger.exists()  # nothing ran, nothing was recorded
    fitting = run_script(
        "bench", f"model={QWEN3_CODER_30B}", "plan=only", "memory=32GB", "num_layers=8",
        "batch_size=1", "max_seq_length=1024",
    )  # fmt: skip
    assert fitting.returncode == 0 and fitting.stderr.splitlines()[-1].endswith(": fits")


@pytest.mark.slow("trains the tiny model through `just train`")
@pytest.mark.timeout(300)
def test_a_run_that_does_not_fit_is_refused_in_one_line_and_plan_force_trains_it(
    tiny_model, tmp_path, isolated_ledger
):
    data = write_sized_chats(tmp_path / "data", [30] * 6)
    words = [f"data={data}", "iters=2", "batch_size=2", "steps_per_report=1", "memory=10MB"]
    refused = run_script("train", *words)
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: predicted peak ") and "of 0.010 GB unified memory" in last
    assert last.endswith("(plan=force trains anyway)")
    assert not isolated_ledger.exists()  # refused before the ledger was opened
    assert run_script("train", *words, "plan=only").returncode == 0  # the plan alone: no refusal
    assert not isolated_ledger.exists()
    forced = run_script("train", *words, "plan=force")
    assert forced.returncode == 0, forced.stderr
    assert "plan=force: training anyway" in forced.stderr
    [run] = Database(isolated_ledger).query("SELECT * FROM runs")
    assert run["status"] == "ok" and run["predicted_peak_gb"] > 0 and run["measured_peak_gb"] > 0
    journal = (isolated_ledger.parent / "journal" / "JOURNAL.md").read_text()
    predicted, measured = run["predicted_peak_gb"], run["measured_peak_gb"]
    assert (
        f"**Memory:** predicted peak {predicted:.3f} GB, measured {measured:.3f} GB by mlx"
        in journal
    )


@pytest.mark.slow("trains the tiny model through `just train` until the watchdog stops it")
@pytest.mark.timeout(300)
def test_the_watchdog_stops_a_run_above_its_ceiling_and_keeps_the_last_checkpoint(
    tiny_model, tmp_path, isolated_ledger
):
    """Five short examples and one long one, a batch each: the long one's step needs far more
    memory. The ceiling sits between the plans of the two (the plan is within 20 %)."""
    data = write_sized_chats(tmp_path / "data", [20] * 5 + [600])
    short = write_sized_chats(tmp_path / "short", [20] * 5)
    settings = LoraSettings(batch_size=1)
    low = plan_memory(str(tiny_model), settings, short).prediction.peak
    high = plan_memory(str(tiny_model), settings, data).prediction.peak
    assert high > 4 * low  # so the ceiling is 2x from each, far outside the plan's 20 %
    ceiling_mb = (low * high) ** 0.5 / 1e6
    result = run_script(
        "train", f"data={data}", "iters=12", "batch_size=1", "save_every=1", "steps_per_report=1",
        "seed=0", f"memory_ceiling={ceiling_mb:.1f}MB", "plan=force",  # the plan sees the long one
    )  # fmt: skip
    assert result.returncode == 1
    [run] = Database(isolated_ledger).query("SELECT * FROM runs")
    assert run["status"] == "failed"
    assert (
        run["error"].startswith("memory ceiling (")
        and f" GB of {ceiling_mb / 1e3:.3f} GB)" in run["error"]
    )
    assert run["measured_peak_gb"] * 1e3 > ceiling_mb
    checkpoints = list(
        Database(isolated_ledger).query("SELECT * FROM checkpoints ORDER BY iteration")
    )
    # Seed 0 draws a short example first, so at least one checkpoint was saved before the stop.
    assert checkpoints and all(
        Path(c["path"], "adapters.safetensors").is_file() for c in checkpoints
    )
    last = checkpoints[-1]
    assert run["error"].endswith(
        f"last checkpoint: iteration {last['iteration']}, kept in {last['path']}"
    )
    assert result.stderr.strip().splitlines()[-1] == f"error: {run['error']}"


SWEEP = """
model = "{model}"
data = "{data}"
suite = "baseline"
seeds = [0, 1]
[train]
iters = 2
[grid]
batch_size = [1, 8]
"""


def test_a_sweep_is_refused_before_its_ledger_when_one_configuration_does_not_fit(
    tiny_model, tmp_path, isolated_ledger
):
    """The sweep's script runs in this process (run_main): planning loads no weights."""
    data = write_sized_chats(tmp_path / "data", [100] * 8)
    path = tmp_path / "batch.toml"
    path.write_text(SWEEP.format(model=tiny_model, data=data))
    small, large = (
        plan_memory(str(tiny_model), LoraSettings(batch_size=b, iters=2), data).prediction.peak
        for b in (1, 8)
    )
    memory = f"memory={(small + large) / 2 / 0.75 / 1e6:.3f}MB"  # batch 1 fits, batch 8 not
    refused = run_main("sweep", str(path), memory)
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith("memory plan: batch_size=1: peak ") and lines[0].endswith(": fits")
    assert lines[1].startswith("memory plan: batch_size=8: peak ")
    assert lines[1].endswith(": does NOT fit")
    assert lines[-1].startswith("error: sweep configuration batch_size=8: predicted peak ")
    assert lines[-1].endswith("would fit (plan=force trains anyway)")
    assert not isolated_ledger.exists()
    planned = run_main("sweep", str(path), memory, "plan=only")
    assert planned.returncode == 0 and not isolated_ledger.exists()


def test_grad_checkpoint_off_keeps_the_trial_fingerprints_sweeps_recorded_before_it(tmp_path):
    from labbench.sweep.sweep import plan_trials
    from labbench.sweep.sweepfile import load_sweep

    data = write_sized_chats(tmp_path / "data", [10] * 4)
    fingerprints = []
    for extra in ("", "grad_checkpoint = false", "grad_checkpoint = true"):
        path = tmp_path / "s.toml"
        path.write_text(SWEEP.format(model="m", data=data).replace("[grid]", f"{extra}\n[grid]"))
        fingerprints.append([t.fingerprint for t in plan_trials(load_sweep(path), "base")])
    # The fingerprints of this sweep before grad_checkpoint existed (main at 14158c9).
    assert fingerprints[0] == fingerprints[1] and fingerprints[2] != fingerprints[0]

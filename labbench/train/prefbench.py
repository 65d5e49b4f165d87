"""`just bench method=dpo|orpo|grpo`: s/iter of labbench's preference training, everything
recorded, against mlx-lm-lora's own command line on the same model, data and settings.

Both sides run the same mlx-lm-lora trainer and report every iteration through its
TrainingCallback: an iteration's wall seconds are 1 / iterations_per_second of its report, its
CPU seconds the growth of the process's CPU time (every thread) since the report before. The
ratio is taken on CPU seconds per 1,000 trained tokens: other work on a shared machine disturbs
CPU time far less than the wall clock (measured here under a load of 15-20 on 2 cores:
wall-clock ratios from 0.05 to 1), and the two sides shuffle their batches apart.
The first `warmup` iterations and the last (both sides validate there) are left out.
Ours is a `train` run (ledger rows, metrics, GRPO rollouts and their scoring) under the bench
run; theirs is `python -m mlx_lm_lora.train -c CONFIG` in a child process, with a callback
added around its `run()` that only notes the numbers (and, on Linux CPU, the device_info key
its trainer needs: train/preference/upstream.py). mlx-lm-lora's datasets do not render tools, so
its copy of the data has each example's tools written into the system message, as the chat
template shows them: both sides train on the same tokens. GRPO's reward on both sides is the
eval's scorer (labbench/train/preference/rewards.py), given to the command line as a reward file.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.record.fingerprint import dataset_fingerprint
from labbench.record.ledger import recording_run
from labbench.train.trainercheck import config_layers

TARGET = 0.95  # mlx-lm-lora's s/iter over ours, at least
# `python -m mlx_lm_lora.train ARGS...` with a callback that notes each report's timing into
# the file named first.
THEIR_RUNNER = """
import json, sys
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm_lora import train as cli
from labbench.train.preference.upstream import cpu_device_info

import time
out, seconds = sys.argv[1], []
class Timer(TrainingCallback):
    def on_train_loss_report(self, info):
        it_s = 1 / float(info["iterations_per_second"])
        tokens = float(info["trained_tokens"])
        seconds.append([info["iteration"], it_s, time.process_time(), tokens])

original = cli.run
cli.run = lambda args, training_callback=None: original(args, training_callback=Timer())
sys.argv = ["mlx_lm_lora.train", *sys.argv[2:]]
with cpu_device_info():
    cli.main()
json.dump(seconds, open(out, "w"))
"""

REWARD_FILE = """
from pathlib import Path
from mlx_lm_lora.trainer.grpo_reward_functions import register_reward_function
from labbench.data.grpodata import load_grpo_file
from labbench.train.preference.rewards import score_completions

SUITE = load_grpo_file(Path({ours!r}) / "train.jsonl")

@register_reward_function()
def score(prompts, completions, answer, types=None):
    return [row["score"] or 0.0 for row in score_completions(SUITE, answer, completions)]
"""


@dataclass(frozen=True)
class PrefBenchPlan:
    model: str
    settings: LoraSettings  # iters, batch_size, method and its settings
    warmup: int  # first iterations left out
    examples: int = 64
    goal: str | None = None
    note: str | None = None


def bench_data(work: Path, plan: "PrefBenchPlan") -> tuple[Path, Path]:
    """Dummy data of the method's kind for us, and the same examples in mlx-lm-lora's own format
    for its command line (GRPO: prompt, system and the prompt's id as its answer). Its datasets
    render no tools, so there each example's tools are written into its system message, as the
    chat template would show them: both sides train on the same tokens."""
    from labbench.data.dummydata import write_dummy_data
    from labbench.train.lora import load_model

    method = plan.settings.method
    kind = "grpo" if method == "grpo" else "dpo"
    ours, theirs = work / "ours", work / "theirs"
    write_dummy_data(ours, plan.examples, plan.settings.seed, kind=kind)
    tokenizer = load_model(plan.model).tokenizer
    theirs.mkdir()
    for split in ("train", "valid", "test"):
        lines = [json.loads(line) for line in (ours / f"{split}.jsonl").read_text().splitlines()]
        converted = []
        for number, line in enumerate(lines, start=1):
            system = system_with_tools(tokenizer, line.get("system"), line["tools"])
            if kind == "grpo":
                converted.append(
                    {"prompt": line["prompt"], "system": system, "answer": f"line-{number}"}
                )
            else:
                keep = {k: v for k, v in line.items() if k in ("prompt", "chosen", "rejected")}
                converted.append(keep | {"system": system})
        (theirs / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in converted))
    return ours, theirs


def system_with_tools(tokenizer, system: str | None, tools: list[dict]) -> str:
    """The system message that, rendered without tools, reads as `system` rendered with them."""
    marker = "\x00SYSTEM\x00"
    user = [{"role": "user", "content": "?"}]
    with_tools = tokenizer.apply_chat_template(
        ([{"role": "system", "content": system}] if system else []) + user,
        tools=tools,
        tokenize=False,
    )
    bare = tokenizer.apply_chat_template(
        [{"role": "system", "content": marker}, *user], tokenize=False
    )
    before, after = bare.split(marker)
    if not (with_tools.startswith(before) and with_tools.endswith(after)):
        raise UserError("this model's chat template shows tools outside the system message")
    return with_tools[len(before) : len(with_tools) - len(after)]


def their_config(plan: PrefBenchPlan, data: Path, ours: Path, work: Path) -> dict:
    s = plan.settings
    config = {
        "model": plan.model,
        "train": True,
        "train_mode": s.method,
        "train_type": "lora",
        "data": str(data),
        "seed": s.seed,
        "iters": s.iters,
        "batch_size": s.batch_size,
        "learning_rate": s.learning_rate,
        "optimizer": "adam",
        "num_layers": config_layers(plan.model),
        "lora_parameters": {"rank": s.rank, "scale": s.scale, "dropout": s.dropout},
        "max_seq_length": s.max_seq_length,
        "steps_per_report": 1,
        "steps_per_eval": s.steps_per_eval,
        "val_batches": s.val_batches,
        "save_every": s.save_every,
        "adapter_path": str(work / "their-adapter"),
        "fuse": False,  # its default writes a fused model into the adapter directory
        "beta": s.beta,
    }
    if s.method == "grpo":
        rewards = work / "rewards.py"
        rewards.write_text(REWARD_FILE.format(ours=str(ours)))
        config |= {"reward_functions_file": str(rewards), "reward_functions": "score"}
    return config


def their_flags(settings: LoraSettings) -> list[str]:
    """Settings its config file cannot set: their flags have defaults, which win over it."""
    return [
        "--dpo-cpo-loss-type", settings.loss_type,
        "--group-size", str(settings.group_size),
        "--max-completion-length", str(settings.max_completion_length),
        "--temperature", str(settings.temperature),
    ]  # fmt: skip


def measured(reports: list[tuple[int, float, float, float]], warmup: int, iters: int) -> dict:
    """From (iteration, wall s, process CPU time, trained tokens so far) reports, one per
    iteration: the median wall and CPU seconds per iteration, and CPU seconds per 1,000 trained
    tokens (the two sides shuffle their batches apart, so an iteration's length differs),
    leaving out the warm-up and the last iteration (it validates)."""
    steps = {
        it: (cpu - cpu_before, tokens - tokens_before)
        for (_, _, cpu_before, tokens_before), (it, _, cpu, tokens) in zip(
            reports, reports[1:], strict=False
        )
    }
    kept = [(it, wall) for it, wall, _, _ in reports if warmup < it < iters and it in steps]
    if not kept:
        raise UserError("no iteration was measured: give --iters at least --untimed-iters + 3")
    tokens = sum(steps[it][1] for it, _ in kept)
    return {
        "wall": statistics.median(wall for _, wall in kept),
        "cpu": statistics.median(steps[it][0] for it, _ in kept),
        "cpu_per_1k_tokens": 1000 * sum(steps[it][0] for it, _ in kept) / max(tokens, 1),
    }


def record_preference_bench(db: Database, adapters_root: Path, plan: PrefBenchPlan) -> dict:
    from labbench.train.training import TrainPlan, record_training

    s = plan.settings
    config = {**s.recorded(), "warmup": plan.warmup, "examples": plan.examples}
    with recording_run(
        db, "bench", config, model=plan.model, goal=plan.goal, note=plan.note
    ) as run:
        with tempfile.TemporaryDirectory(prefix="labbench-prefbench-") as tmp:
            work = Path(tmp)
            ours, theirs = bench_data(work, plan)
            print(f"run {run.id}: labbench's {s.method} ({s.iters} iterations)", file=sys.stderr)
            trained = record_training(
                db,
                TrainPlan(
                    model=plan.model,
                    data=ours,
                    data_fingerprint=dataset_fingerprint(ours),
                    settings=s,
                    adapters_root=adapters_root,
                    note=f"bench: labbench's {s.method}",
                    parent_run_id=run.id,
                ),
            )
            rows = list(
                db.query(
                    "SELECT r.iteration, r.iterations_per_second, m.value AS cpu, r.trained_tokens"
                    " FROM train_reports r JOIN train_metrics m ON m.run_id = r.run_id"
                    " AND m.iteration = r.iteration AND m.split = 'train'"
                    " AND m.name = 'cpu_seconds' WHERE r.run_id = ? AND r.split = 'train'"
                    " ORDER BY r.iteration",
                    [trained.run_id],
                )
            )
            reports = [
                (r["iteration"], 1 / r["iterations_per_second"], r["cpu"], r["trained_tokens"])
                for r in rows
            ]
            ours_s = measured(reports, plan.warmup, s.iters)
            print(f"run {run.id}: mlx-lm-lora's command line, same settings", file=sys.stderr)
            config_file, out = work / "config.json", work / "seconds.json"
            config_file.write_text(json.dumps(their_config(plan, theirs, ours, work)))
            done = subprocess.run(
                [sys.executable, "-c", THEIR_RUNNER, str(out), "-c", str(config_file)]
                + their_flags(s),
                capture_output=True,
                text=True,
            )
            if done.returncode != 0 or not out.is_file():
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise UserError(f"mlx-lm-lora's command line failed: {last}")
            theirs_s = measured(
                [tuple(x) for x in json.loads(out.read_text())], plan.warmup, s.iters
            )
        summary = {
            "train_run": trained.run_id,
            "ours_s_per_iter": ours_s["wall"],
            "theirs_s_per_iter": theirs_s["wall"],
            "ours_cpu_s_per_iter": ours_s["cpu"],
            "theirs_cpu_s_per_iter": theirs_s["cpu"],
            "ours_cpu_s_per_1k_tokens": ours_s["cpu_per_1k_tokens"],
            "theirs_cpu_s_per_1k_tokens": theirs_s["cpu_per_1k_tokens"],
            # >= 1: ours costs no more CPU per trained token
            "ratio": theirs_s["cpu_per_1k_tokens"] / ours_s["cpu_per_1k_tokens"],
        }
        target = (
            "recording costs nothing visible" if summary["ratio"] >= TARGET else "ours is slower"
        )
        summary["verdict"] = f"{target} (ratio {summary['ratio']:.2f}, target >= {TARGET})"
        run.update(summary=summary)
    return summary

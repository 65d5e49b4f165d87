"""Train a LoRA adapter in-process, streaming every loss report into the ledger.

    just train data=data/dummy iters=200
    just train model=models/tiny-chat data=data/dummy rank=16 learning_rate=3e-4 eval_suite=baseline
    just train model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit data=data/mine num_layers=8
    just train seeds=0,1,2 learning_rate=3e-4 eval_suite=baseline   # a one-configuration sweep
    just train np=2 batch_size=4                # 2 data-parallel ranks on this machine
    just train hosts=hosts.json batch_size=8    # one rank per host of mlx's JSON hostfile
    just train model=mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit plan=only   # will it fit?
    just train method=dpo data=data/dpo adapter=adapters/3 beta=0.1 eval_suite=baseline
    just train method=grpo data=data/grpo group_size=4 rewards=score,format reward_weights=1,0.2
    just train method=grpo data=suite:mine eval_suite=baseline   # a suite's prompts as GRPO data
    just train resume=7                         # continue run 7 from its last checkpoint

--method dpo, orpo or grpo trains through mlx-lm-lora (labbench/train/preference/): DPO and
ORPO on prompt/chosen/rejected pairs, GRPO on prompts with expectations, each sampled completion
rewarded by the eval's own scorer. --adapter continues an adapter (an SFT run's) and records it
as the run's lineage. The training prompts may not be near any prompt of --eval-suite.

The adapter goes to adapters/<run-id>/ beside the ledger (adapter_config.json and
adapters.safetensors), with a checkpoint every --save-every iterations under checkpoints/.
With --eval-suite every checkpoint is evaluated through a real server and the best by eval
score (not by validation loss) becomes the run's adapter. Ctrl-C leaves an `interrupted` run
whose last checkpoint is usable, and `--resume RUN` continues it from there (the optimizer
state, step count and position in the data order are saved beside every checkpoint).

Before anything is loaded, the memory plan predicts the peak from the model's config.json and
the data, and refuses a run that would not fit here (plan=force trains anyway, plan=only stops
after the plan). While training, a watchdog stops the run above --memory-ceiling (a `failed`
run whose last checkpoint is kept).

With --seeds the same settings are trained once per seed as a one-configuration sweep (see
`just sweep`): each final adapter is evaluated on --eval-suite (default: baseline), the base
model once, and the verdict says whether the change is beyond seed noise.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.core.settings import DPO_LOSS_TYPES, METHODS, REWARDS, LoraSettings
from labbench.machine.blas import reexec_with_openblas
from labbench.present import recording
from labbench.train.distributed import add_launch_args, launch_of
from labbench.train.memory.check import MemoryOptions, add_memory_args

DEFAULT_DATA = "data/dummy"  # chat-format JSONL directory (train/valid/test.jsonl)
DEFAULTS = LoraSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a LoRA adapter and record the run.",
        epilog="Make-style key=value words work too: iters=100 learning_rate=3e-4.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="dataset directory")
    parser.add_argument("--iters", type=int, default=DEFAULTS.iters)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate)
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULTS.warmup,
        help="learning-rate warm-up iterations, then cosine decay",
    )
    parser.add_argument("--rank", type=int, default=DEFAULTS.rank, help="LoRA rank")
    parser.add_argument("--scale", type=float, default=DEFAULTS.scale, help="LoRA scale")
    parser.add_argument(
        "--num-layers", type=int, help="blocks to adapt, from the last (default: all)"
    )
    parser.add_argument("--dropout", type=float, default=DEFAULTS.dropout, help="LoRA dropout")
    parser.add_argument(
        "--keys", help="comma-separated module names to adapt, e.g. self_attn.q_proj,mlp.up_proj"
    )
    parser.add_argument("--seed", type=int, help=f"default: {DEFAULTS.seed}")
    parser.add_argument(
        "--seeds", help="comma-separated seeds, e.g. 0,1,2: a one-configuration sweep"
    )
    parser.add_argument("--save-every", type=int, default=DEFAULTS.save_every)
    parser.add_argument("--steps-per-report", type=int, default=DEFAULTS.steps_per_report)
    parser.add_argument("--steps-per-eval", type=int, default=DEFAULTS.steps_per_eval)
    parser.add_argument("--val-batches", type=int, default=DEFAULTS.val_batches)
    parser.add_argument("--max-seq-length", type=int, default=DEFAULTS.max_seq_length)
    parser.add_argument(
        "--mask-prompt",
        type=cli.boolean,
        nargs="?",
        const=True,
        default=DEFAULTS.mask_prompt,
        metavar="true|false",
        help="loss on the answers only; false: on the prompt tokens too",
    )
    add_memory_args(parser, grad_checkpoint=True)
    parser.add_argument(
        "--method", default=DEFAULTS.method, choices=METHODS, help="what is optimised"
    )
    parser.add_argument(
        "--adapter", help="continue this adapter's LoRA layers (dpo, orpo, grpo), e.g. adapters/3"
    )
    parser.add_argument(
        "--beta", type=float, default=DEFAULTS.beta, help="dpo/orpo strength; grpo KL coefficient"
    )
    parser.add_argument("--loss-type", default=DEFAULTS.loss_type, choices=DPO_LOSS_TYPES)
    parser.add_argument("--group-size", type=int, default=DEFAULTS.group_size, help="grpo")
    parser.add_argument(
        "--max-completion-length", type=int, default=DEFAULTS.max_completion_length, help="grpo"
    )
    parser.add_argument("--temperature", type=float, default=DEFAULTS.temperature, help="grpo")
    parser.add_argument(
        "--rewards", default=",".join(DEFAULTS.rewards), help=f"grpo: of {', '.join(REWARDS)}"
    )
    parser.add_argument("--reward-weights", help="grpo: one weight per reward, e.g. 1,0.2")
    parser.add_argument("--eval-suite", help="evaluate every checkpoint on this suite")
    parser.add_argument("--eval-max-tokens", type=int, help="max_tokens for checkpoint evals")
    add_launch_args(
        parser,
        np_help="data-parallel ranks on this machine, through mlx.launch",
        hosts_help="mlx's JSON hostfile: one rank per host (see README)",
    )
    parser.add_argument(
        "--resume",
        type=int,
        metavar="RUN",
        help="continue this interrupted or failed training run from its last checkpoint, with"
        " the settings it was started with",
    )
    cli.add_run_args(parser)
    cli.add_old_spelling(parser, "--layers", "--num-layers")
    cli.add_old_spelling(parser, "--no-mask-prompt", "--mask-prompt", value=False)
    return parser


def settings_from(args: argparse.Namespace) -> LoraSettings:
    settings = LoraSettings(
        iters=args.iters,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup=args.warmup,
        rank=args.rank,
        scale=args.scale,
        dropout=args.dropout,
        num_layers=args.num_layers,
        keys=tuple(args.keys.split(",")) if args.keys else None,
        seed=DEFAULTS.seed if args.seed is None else args.seed,
        mask_prompt=args.mask_prompt,
        max_seq_length=args.max_seq_length,
        steps_per_report=min(args.steps_per_report, args.iters),
        steps_per_eval=args.steps_per_eval,
        val_batches=args.val_batches,
        save_every=args.save_every,
        grad_checkpoint=args.grad_checkpoint,
        method=args.method,
        beta=args.beta,
        loss_type=args.loss_type,
        group_size=args.group_size,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        rewards=tuple(name.strip() for name in args.rewards.split(",")),
        reward_weights=reward_weights(args.reward_weights),
    )
    unknown = [name for name in settings.rewards if name not in REWARDS]
    if unknown:
        raise UserError(f"--rewards {unknown[0]}: not one of {', '.join(REWARDS)}")
    weights = settings.reward_weights
    if weights is not None and len(weights) != len(settings.rewards):
        raise UserError(
            f"--reward-weights: {len(weights)} weights for {len(settings.rewards)} rewards"
        )
    names = ("iters", "batch_size", "rank", "save_every", "steps_per_report", "group_size")
    for name in (*names, "max_completion_length"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if settings.learning_rate <= 0:
        raise UserError("--learning-rate must be positive")
    if settings.num_layers is not None and settings.num_layers < 1:
        raise UserError("--num-layers must be at least 1")
    if not 0 <= settings.dropout < 1:
        raise UserError(f"--dropout must be from 0 up to 1, got {settings.dropout:g}")
    return settings


def reward_weights(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(weight) for weight in text.split(","))
    except ValueError:
        raise UserError(f"--reward-weights {text}: give numbers, e.g. 1,0.2") from None


def check_data(data: Path, method: str, eval_suite: str | None) -> str:
    """Validate the dataset before anything heavy (the rule `just check-data` applies) and
    refuse prompts near --eval-suite's; returns its fingerprint."""
    from labbench.data.datacheck import require_trainable, training_prompts
    from labbench.data.leakage import find_leaks
    from labbench.eval.suite import load_suite
    from labbench.record.fingerprint import dataset_fingerprint

    if data.suffix != ".toml":
        require_trainable(data, method=method)
    elif not load_suite(str(data)).exec_tests:
        raise UserError(f"--data {data}: exec = false: GRPO's reward runs the suite's tests")
    if eval_suite:
        texts = training_prompts(data)
        leaks = find_leaks(texts, [load_suite(eval_suite)])
        if leaks:
            first = leaks[0]
            raise UserError(
                f"--data {data}: {len(leaks)} of {len(texts)} training prompts are near prompts"
                f" of --eval-suite {eval_suite} (first: {first.text!r} ~ {first.prompt_id},"
                f" {first.reason}): a model trained on its judge's questions proves nothing"
            )
    return dataset_fingerprint(data)


def seeds_sweep(args: argparse.Namespace, data: Path, settings: LoraSettings):
    """`--seeds 0,1,2`: these settings as a sweep without a grid."""
    from labbench.sweep.sweepfile import Sweep

    if args.seed is not None:
        raise UserError(f"--seed {args.seed} and --seeds {args.seeds}: give one")
    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(","))
    except ValueError:
        raise UserError(f"--seeds {args.seeds}: give whole numbers, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"--seeds {args.seeds}: give distinct seeds of at least 0")
    fixed = {k: v for k, v in settings.recorded().items() if k != "seed" and v is not None}
    return Sweep(
        path=Path("just train"),
        name=f"train seeds={args.seeds}",
        model=args.model,
        data=data.resolve(),
        suite=args.eval_suite or "baseline",
        seeds=seeds,
        fixed=fixed,
        grid={},
        eval={"max_tokens": args.eval_max_tokens} if args.eval_max_tokens else {},
    )


def start_adapter(args: argparse.Namespace, settings: LoraSettings) -> Path | None:
    """--adapter, checked: a preference method continues it, in one process."""
    if args.adapter is None:
        return None
    if settings.method == "sft":
        raise UserError("--adapter continues an adapter with --method dpo, orpo or grpo")
    if args.seeds:
        raise UserError("--adapter with --seeds: a sweep trials start from the base model")
    adapter = cli.user_path(args.adapter)
    if not adapter.is_dir():
        raise UserError(f"--adapter {args.adapter}: no such directory ({adapter})")
    return adapter


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = cli.parse_args(parser, argv)
    if args.resume is not None:
        others = sorted(cli.given_flags(parser, argv) - {"--resume", "--ledger"})
        if others:
            raise UserError(
                f"--resume continues run {args.resume} with the settings it was started with:"
                f" {', '.join(others)} cannot change"
            )
        from labbench.train.trainresume import resume_training

        with recording.recording_ledger(args.ledger) as ledger:
            return train_and_report(
                ledger, lambda announce: resume_training(ledger.db, args.resume, None, announce)
            )
    from labbench.data.grpodata import suite_file
    from labbench.eval.suite import load_suite
    from labbench.serving.server import resolve_model
    from labbench.train.memory.check import check_training_memory
    from labbench.train.trainercheck import check_layers
    from labbench.train.training import TrainPlan, record_training

    data = suite_file(args.data) or cli.user_path(args.data)
    if data.suffix == ".toml" and args.method != "grpo":
        raise UserError(f"--data {args.data}: a suite's prompts train --method grpo only")
    if not data.exists():
        raise UserError(
            f"--data {args.data}: no such directory ({data}); `just dummy-data` makes one"
        )
    settings = settings_from(args)
    launch = launch_of(args, settings.batch_size)
    sweep = None
    if launch and settings.method != "sft":
        raise UserError(f"--method {settings.method} trains in one process: drop --np/--hosts")
    if args.seeds is not None:
        if launch:
            raise UserError("--seeds with --np or --hosts: a sweep trains in one process")
        sweep = seeds_sweep(args, data, settings)
    start = start_adapter(args, settings)
    if start:  # the adapter's base model, or --model when it is that one (eval's rule)
        from labbench.eval.adapterbase import model_for_adapter

        # Training goes on from the adapter's own base: no --allow-other-base here.
        model = model_for_adapter(args.model, args.adapter, False, args.ledger, False)[0]
    else:
        model = resolve_model(args.model)
    fingerprint = check_data(data, settings.method, args.eval_suite)
    check_layers(settings, model)
    memory = MemoryOptions.from_args(args)
    if sweep:
        from labbench.sweep.sweep import sweep_command

        suite = load_suite(sweep.suite)
        return sweep_command(sweep, suite, model, args.ledger, args.goal, args.note, False, memory)
    if args.eval_suite:
        load_suite(args.eval_suite)  # a bad suite fails now, not after training
    memory_plan = check_training_memory(model, settings, data, memory, launch=launch)
    if memory.plan == "only":
        return 0
    with recording.recording_ledger(args.ledger) as ledger:
        plan = TrainPlan(
            model=model,
            data=data,
            data_fingerprint=fingerprint,
            settings=settings,
            adapters_root=ledger.adapters_dir,
            eval_suite=args.eval_suite,
            eval_max_tokens=args.eval_max_tokens,
            goal=args.goal,
            note=args.note,
            launch=launch,
            memory_plan=memory_plan,
            memory_ceiling=memory.watch_ceiling(),
            start_adapter=start,
        )
        return train_and_report(
            ledger,
            lambda announce: record_training(ledger.db, plan, on_start=announce),
            resumable=settings.method == "sft",
        )


def train_and_report(ledger, train, resumable: bool = True) -> int:
    """`train(announce)` (a new run, or a resumed one), and what it left, said to the user."""
    from labbench.train.trainstate import ADAPTER_WEIGHTS

    started: dict[str, Any] = {}

    def announce(run_id: int, adapter_dir: Path) -> None:
        started.update(run_id=run_id, adapter_dir=adapter_dir)
        print(f"run {run_id}: training a LoRA adapter into {adapter_dir}", file=sys.stderr)

    try:
        outcome = train(announce)
    except KeyboardInterrupt:
        adapter_dir = started.get("adapter_dir")
        if adapter_dir and (adapter_dir / ADAPTER_WEIGHTS).is_file():
            resume = f"; continue the training with `just train resume={started['run_id']}`"
            print(
                f"interrupted; the last checkpoint is usable: {adapter_dir}"
                + (resume if resumable else ""),
                file=sys.stderr,
            )
        else:
            print("interrupted before the first checkpoint was saved", file=sys.stderr)
        return 130
    print(f"recorded as run {outcome.run_id} in {ledger.path}")
    print(f"adapter: {outcome.adapter_dir}")
    best = outcome.summary.get("best_checkpoint")
    if best:
        suite = json.loads(ledger.db["runs"].get(outcome.run_id)["config"])["eval_suite"]
        print(
            f"best checkpoint: iteration {best['iteration']} ({best['path']}), "
            f"overall {best['score']:.1%} on {suite} (eval run {best['eval_run_id']})"
        )
    return 0


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)

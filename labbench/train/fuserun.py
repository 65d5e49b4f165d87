"""A `fuse` run: which adapter and checkpoint, fused how, written where, and whether the fused
model scores like the adapter did (its eval against the adapter's, paired prompt by prompt).

Lineage goes to the `fuses` table (schema m011); an eval of the output directory is then a
derived model of the fuse's base in the journal's cumulative table, whoever runs it.
"""

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import SamplingSettings
from labbench.core.stats import compare_scores, p_value_text
from labbench.eval.adapterbase import base_of_adapter
from labbench.record.fingerprint import MODEL_FILE_SUFFIXES, directory_sha256, file_sha256
from labbench.record.ledger import paired_scores, recording_run
from labbench.train.fusemodel import (
    QuantizationPlan,
    check_generates,
    fuse_into,
    model_config,
    model_dir,
    plan_quantization,
    quantized_bits,
    tokenizer_mismatches,
)
from labbench.train.trainstate import ADAPTER_CONFIG, ADAPTER_WEIGHTS

NO_VERIFY = "none"  # verify=none: fuse and check, but evaluate nothing


@dataclass(frozen=True)
class AdapterSource:
    """The adapter to fuse: where its weights are, the training run that wrote it (None for
    an adapter this ledger did not train), the iteration it holds (None: unknown) and whether
    they are the adapter directory's own weights (its adapters.safetensors, or the checkpoint
    of the iteration a finished training left in it)."""

    adapter_dir: Path
    weights: Path
    train_run: dict | None
    iteration: int | None
    base_model: str
    is_final: bool

    @property
    def paths(self) -> list[str]:
        """The adapter paths an eval of these weights may have recorded: an eval of the adapter
        directory is of another iteration's weights unless these are the final ones."""
        found = [str(self.adapter_dir)] if self.is_final else []
        if self.iteration is not None:
            found.append(str(self.adapter_dir / "checkpoints" / f"{self.iteration:07d}"))
        return found


def training_of(db: Database, adapter_dir: Path) -> dict | None:
    sql = "SELECT * FROM runs WHERE kind = 'train' AND adapter = ? ORDER BY id DESC LIMIT 1"
    return next(iter(db.query(sql, [str(adapter_dir)])), None)


def checkpoint_weights(adapter_dir: Path, iteration: int) -> Path | None:
    """A saved checkpoint's weights: collected under checkpoints/, or where mlx-lm writes them
    while training runs (NNNNNNN_adapters.safetensors)."""
    for path in (
        adapter_dir / "checkpoints" / f"{iteration:07d}" / ADAPTER_WEIGHTS,
        adapter_dir / f"{iteration:07d}_{ADAPTER_WEIGHTS}",
    ):
        if path.is_file():
            return path
    return None


def saved_checkpoints(adapter_dir: Path) -> list[int]:
    found = {int(p.parent.name) for p in adapter_dir.glob(f"checkpoints/[0-9]*/{ADAPTER_WEIGHTS}")}
    found |= {int(p.name.split("_", 1)[0]) for p in adapter_dir.glob(f"[0-9]*_{ADAPTER_WEIGHTS}")}
    return sorted(found)


def choose_adapter(db: Database, adapter_dir: Path, checkpoint: int | None) -> AdapterSource:
    """The adapter to fuse. A training run still `running` is refused unless a saved
    checkpoint is named: its adapter file is rewritten as training goes on (the reference
    project fused iteration 600 while it meant 800)."""
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise UserError(f"--adapter {adapter_dir}: no {ADAPTER_CONFIG} in it")
    train = training_of(db, adapter_dir)
    available = saved_checkpoints(adapter_dir)
    listed = ", ".join(map(str, available)) or "none saved yet"
    if checkpoint is not None:
        weights = checkpoint_weights(adapter_dir, checkpoint)
        if weights is None:
            raise UserError(f"--checkpoint {checkpoint}: not saved in {adapter_dir} ({listed})")
        iteration: int | None = checkpoint
        # Decided by iteration, not by comparing files: while training runs, mlx-lm writes
        # adapters.safetensors and the checkpoint with the same bytes, yet an earlier eval of
        # the adapter directory scored other weights.
        is_final = checkpoint == final_iteration(train)
    elif train is not None and train["status"] == "running":
        raise UserError(
            f"training run {train['id']} that writes {adapter_dir} is still running: its "
            "adapter changes as it trains. Wait for it, or fuse a saved checkpoint with "
            f"checkpoint=N (saved: {listed})"
        )
    else:
        weights = adapter_dir / ADAPTER_WEIGHTS
        if not weights.is_file():
            raise UserError(f"--adapter {adapter_dir}: no {ADAPTER_WEIGHTS} in it")
        iteration = final_iteration(train)
        if iteration is None:  # an interrupted training: its file is a saved checkpoint's
            iteration = identical_checkpoint(adapter_dir, weights)
        is_final = True
    # The rule an eval and `serve` follow (adapterbase): its training run's model, else the
    # model its adapter_config.json names.
    base = base_of_adapter(str(adapter_dir), db.conn).model
    if not base:
        raise UserError(f"--adapter {adapter_dir}: its {ADAPTER_CONFIG} names no base model")
    return AdapterSource(adapter_dir, weights, train, iteration, base, is_final)


def identical_checkpoint(adapter_dir: Path, weights: Path) -> int | None:
    """The latest saved checkpoint with the same bytes as `weights` (training has stopped)."""
    sha = file_sha256(weights)
    for iteration in reversed(saved_checkpoints(adapter_dir)):
        found = checkpoint_weights(adapter_dir, iteration)
        if found is not None and file_sha256(found) == sha:
            return iteration
    return None


def final_iteration(train: dict | None) -> int | None:
    """The iteration a finished training's adapter file holds: its best checkpoint when
    checkpoints were evaluated, else the last iteration."""
    if train is None or train["status"] != "ok":
        return None
    best = json.loads(train["summary"] or "{}").get("best_checkpoint")
    if best:
        return best["iteration"]
    return json.loads(train["config"] or "{}").get("iters")


def output_dir(models_root: Path, run_id: int, bits: int | None) -> Path:
    return models_root / (f"fused-{run_id}" + (f"-q{bits}" if bits else ""))


def reference_eval(db: Database, source: AdapterSource, suite: str | None) -> dict | None:
    """The most recent finished eval of this adapter (on `suite`, when given)."""
    paths = source.paths
    marks = ", ".join("?" * len(paths))
    suite_filter = " AND suite = ?" if suite else ""
    rows = db.query(
        f"SELECT * FROM runs WHERE kind = 'eval' AND status = 'ok' AND adapter IN ({marks})"
        f"{suite_filter} AND id IN (SELECT run_id FROM eval_results) ORDER BY id DESC LIMIT 1",
        [*paths, *([suite] if suite else [])],
    )
    return next(iter(rows), None)


def verdict_text(scores_adapter: list[float], scores_fused: list[float]) -> tuple[str, float]:
    """`fused matches adapter` unless the paired test finds a difference: `fused is worse
    (p = ...)` or `fused is better (p = ...)`."""
    comparison = compare_scores(scores_adapter, scores_fused)
    if not comparison.significant:
        return "fused matches adapter", comparison.p_value
    return f"fused is {comparison.verdict} ({p_value_text(comparison)})", comparison.p_value


@dataclass(frozen=True)
class FusePlan:
    adapter_dir: Path
    checkpoint: int | None
    bits: int | None
    group_size: int | None
    dequantize: bool | None  # None: when the base is quantized
    verify: str | None  # a suite; None: the adapter's eval's; NO_VERIFY: none
    models_root: Path
    goal: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class FuseOutcome:
    run_id: int
    output: Path
    verdict: str | None


@dataclass(frozen=True)
class Verification:
    """How the fused model is verified, decided before fusing: against eval run
    `reference_id`, against an eval of the adapter on `suite` made first, or not at all
    (`verdict` says why)."""

    reference_id: int | None = None
    suite: str | None = None
    verdict: str | None = None


def prepare(db: Database, plan: FusePlan) -> tuple[AdapterSource, QuantizationPlan, Verification]:
    """Everything refused before a run is recorded: the adapter, the quantization, the
    verification."""
    source = choose_adapter(db, plan.adapter_dir, plan.checkpoint)
    base_bits = quantized_bits(model_config(source.base_model))
    quantization = plan_quantization(base_bits, plan.bits, plan.dequantize)
    return source, quantization, plan_verification(db, source, plan.verify)


def plan_verification(db: Database, source: AdapterSource, suite: str | None) -> Verification:
    """The eval to compare the fused model with (see verify()). Raises UserError for what
    would fail only after fusing: a checkpoint that cannot be evaluated yet, a suite file
    that no longer loads."""
    if suite == NO_VERIFY:
        return Verification(verdict="not verified (verify=none)")
    from labbench.eval.suite import load_suite

    # Runs record a suite's name; verify= may be a name or a path.
    reference = reference_eval(db, source, load_suite(suite).name if suite else None)
    if reference is not None:
        suite_path = json.loads(reference["config"] or "{}").get("suite_path")
        if not suite_path:
            raise UserError(
                f"eval run {reference['id']} of the adapter records no suite file to evaluate "
                "the fused model on: evaluate the adapter again, or pass verify=none"
            )
        load_suite(suite_path)  # the fused model's eval reads it again
        return Verification(reference_id=reference["id"])
    what = "the adapter" if source.is_final else f"checkpoint {source.iteration}"
    if suite is None:
        return Verification(verdict=f"not verified: {what} has no eval (pass verify=SUITE)")
    if source.weights.name != ADAPTER_WEIGHTS:
        raise UserError(
            f"checkpoint {source.iteration} has no eval on {suite} and its training still "
            "runs: verify once it has finished, or pass verify=none"
        )
    return Verification(suite=suite)


def record_fuse(db: Database, plan: FusePlan) -> FuseOutcome:
    """Fuse, check and verify as one `fuse` run (see the module docstring)."""
    from labbench.tiny.tinymodel import build_atomically

    source, quantization, verification = prepare(db, plan)
    base = source.base_model
    base_path = model_dir(base)
    train_id = source.train_run["id"] if source.train_run else None
    config = {
        "adapter": str(source.adapter_dir),
        "weights": str(source.weights),
        "train_run_id": train_id,
        "checkpoint": source.iteration,
        "bits": quantization.bits,
        "group_size": plan.group_size,
        "dequantize": quantization.dequantize,
        "verify": plan.verify,
    }
    dataset = source.train_run["dataset"] if source.train_run else None
    with recording_run(
        db,
        "fuse",
        config,
        model=base,
        adapter=str(source.adapter_dir),
        dataset=dataset,
        goal=plan.goal,
        note=plan.note,
    ) as run:
        out = output_dir(plan.models_root, run.id, quantization.bits)
        if out.exists():
            raise UserError(f"{out} already exists (left by another ledger?)")
        print(f"run {run.id}: fusing {source.weights} into {base} -> {out}", file=sys.stderr)
        if quantization.warning:
            print(f"warning: {quantization.warning}", file=sys.stderr)
        checks: dict[str, Any] = {}

        def write(tmp: Path) -> None:
            with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".adapter-") as snapshot:
                # A copy, so a training still writing beside it cannot change what is fused.
                shutil.copyfile(
                    source.adapter_dir / ADAPTER_CONFIG, Path(snapshot) / ADAPTER_CONFIG
                )
                shutil.copyfile(source.weights, Path(snapshot) / ADAPTER_WEIGHTS)
                checks["adapter_sha256"] = file_sha256(Path(snapshot) / ADAPTER_WEIGHTS)
                fuse_into(base, Path(snapshot), tmp, quantization, plan.group_size)
            problems = tokenizer_mismatches(base_path, tmp)
            if problems:
                raise UserError("the fused model's tokenizer differs: " + "; ".join(problems))
            checks["tokenizer"] = "same eos/bos ids, chat template and tokenizer files as base"
            checks.update(check_generates(tmp))

        plan.models_root.mkdir(parents=True, exist_ok=True)
        build_atomically(out, write)
        db.table("run_files").insert({"run_id": run.id, "kind": "model", "path": str(out)})
        try:
            written = model_config(str(out)).get("quantization") or {}
            lineage = {
                "fuse_run_id": run.id,
                "train_run_id": train_id,
                "checkpoint": source.iteration,
                "adapter": str(source.adapter_dir),
                "base_model": base,
                "base_fingerprint": directory_sha256(base_path, db, MODEL_FILE_SUFFIXES)[:16],
                "base_bits": quantized_bits(model_config(base)),
                "dequantized": int(quantization.dequantize),
                "bits": written.get("bits"),
                "group_size": written.get("group_size"),
                "output": str(out),
                "output_fingerprint": directory_sha256(out, db, MODEL_FILE_SUFFIXES)[:16],
                "warning": quantization.warning,
            }
            db.table("fuses").insert(lineage)
            run.update(summary={**lineage, "checks": checks})
            verified = verify(db, run.id, source, out, verification)
        except BaseException as error:
            # The model is complete and checked, and a large one is slow to fuse again: kept,
            # but said to be unverified (its fuses row has no verdict).
            why = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            print(f"{out} kept, not verified (run {why})", file=sys.stderr)
            raise
        run.update(summary={**lineage, "checks": checks, **verified})
        db.table("fuses").update(run.id, verified)
    return FuseOutcome(run.id, out, verified.get("verdict"))


def verify(
    db: Database, run_id: int, source: AdapterSource, out: Path, verification: Verification
) -> dict:
    """Evaluate the fused model as the adapter was evaluated (the same suite file and sampling
    settings; the adapter is evaluated first when it never was on the suite asked for) and
    compare the two prompt by prompt. Returns the fuses columns it fills."""
    if verification.verdict:
        return {"verdict": verification.verdict}
    reference_id = verification.reference_id or evaluate(
        db, run_id, source.base_model, str(source.weights.parent), verification.suite
    )
    fused_id = evaluate(db, run_id, str(out), None, None, like=reference_id)
    adapter_scores, fused_scores = paired_scores(db, reference_id, fused_id)
    verdict, p_value = verdict_text(adapter_scores, fused_scores)
    suite_name = db.table("runs").get(reference_id)["suite"]
    return {
        "verify_suite": suite_name,
        "adapter_eval_run_id": reference_id,
        "fused_eval_run_id": fused_id,
        "verdict": verdict,
        "p_value": p_value,
    }


def evaluate(
    db: Database,
    run_id: int,
    model: str,
    adapter: str | None,
    suite: str | None,
    like: int | None = None,
) -> int:
    """One eval under the fuse run: on `suite` with the default settings, or with the suite
    file, prompts and sampling of eval run `like`. Raises UserError when it fails."""
    from labbench.eval.evaluation import EvalPlan, record_eval
    from labbench.eval.suite import load_suite

    settings: dict[str, Any] = {}
    if like is not None:
        settings = json.loads(db.table("runs").get(like)["config"] or "{}")
        suite = settings["suite_path"]
    loaded = load_suite(str(suite))
    limit = settings.get("limit")
    execution = settings.get("execution") or {}
    suite_prompts = len(loaded.prompts)
    loaded = replace(
        loaded,
        prompts=loaded.prompts[:limit],
        exec_tests=execution.get("enabled", loaded.exec_tests),
    )
    sampling = settings.get("sampling") or {}
    eval_plan = EvalPlan(
        suite=loaded,
        model=model,
        adapter=adapter,
        sampling=SamplingSettings(
            temperature=sampling.get("temperature", 0.0),
            max_tokens=sampling.get("max_tokens"),
            seed=sampling.get("seed"),
        ),
        epochs=settings.get("epochs", 1),
        limit=limit,
        suite_prompts=suite_prompts,
        note=f"verify fuse run {run_id}",
        parent_run_id=run_id,
    )
    outcome = record_eval(db, eval_plan)
    if outcome.error or not outcome.scores:
        raise UserError(f"verifying eval run {outcome.run_id} failed: {outcome.error}")
    return outcome.run_id

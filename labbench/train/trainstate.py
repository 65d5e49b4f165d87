"""What a training needs to continue from a checkpoint, beyond the adapter weights mlx-lm saves.

mlx-lm's trainer starts at iteration 1 with a fresh optimizer, and draws its batch order from
numpy's global generator, which its validation draws from too. So beside every checkpoint
(`checkpoints/NNNNNNN/`) the optimizer's state is saved (Adam's moments and its step count, so
the learning-rate schedule continues), and the training batches come from mlx-lm's own
`iterate_batches` with a numpy generator of their own, seeded by the run's seed: the order
depends on the seed alone, and a resumed run replays it up to where it stopped. mlx's random
key (dropout) is re-seeded from (seed, iteration) at every checkpoint, in a straight run as in
a resumed one, since mlx cannot set a saved key back.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labbench.core.errors import UserError

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
OPTIMIZER_STATE = "optimizer.safetensors"  # beside each checkpoint's adapters.safetensors


@dataclass(frozen=True)
class Checkpoint:
    iteration: int
    weights: Path
    optimizer: Path | None  # None: saved before optimizer states were (cannot be resumed)


def checkpoint_dir(adapter_dir: Path, iteration: int) -> Path:
    return adapter_dir / "checkpoints" / f"{iteration:07d}"


def keep_final_adapter(adapter_dir: Path, iters: int) -> None:
    """The finished adapter is a checkpoint too (mlx-lm saves only every `save_every`
    iterations), so checkpoint evals always score what training ended with."""
    final = checkpoint_dir(adapter_dir, iters)
    if (final / ADAPTER_WEIGHTS).is_file() or (
        adapter_dir / f"{iters:07d}_{ADAPTER_WEIGHTS}"
    ).is_file():
        return
    final.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(adapter_dir / ADAPTER_WEIGHTS, final / ADAPTER_WEIGHTS)
    shutil.copyfile(adapter_dir / ADAPTER_CONFIG, final / ADAPTER_CONFIG)


def collect_checkpoints(adapter_dir: Path) -> list[tuple[int, Path]]:
    """Give each of mlx-lm's `NNNNNNN_adapters.safetensors` files (and its optimizer state) a
    loadable directory of its own (`checkpoints/NNNNNNN/` with adapter_config.json), so a
    server can serve any of them and a resume can start from it."""
    found = []
    for name in (ADAPTER_WEIGHTS, OPTIMIZER_STATE):
        for saved in sorted(adapter_dir.glob(f"[0-9]*_{name}")):
            checkpoint = checkpoint_dir(adapter_dir, int(saved.name.split("_", 1)[0]))
            checkpoint.mkdir(parents=True, exist_ok=True)
            saved.replace(checkpoint / name)
            if name == ADAPTER_WEIGHTS:
                shutil.copyfile(adapter_dir / ADAPTER_CONFIG, checkpoint / ADAPTER_CONFIG)
    for checkpoint in sorted((adapter_dir / "checkpoints").glob("[0-9]*")):
        if (checkpoint / ADAPTER_WEIGHTS).is_file():
            found.append((int(checkpoint.name), checkpoint))
    return found


def latest_checkpoint(adapter_dir: Path, iters: int) -> Checkpoint | None:
    """Where a resume starts: the finished adapter (`iters`: nothing left to train), else the
    newest checkpoint with its optimizer state; None when there is neither."""
    resumable = None
    for iteration, path in collect_checkpoints(adapter_dir):
        state = path / OPTIMIZER_STATE
        if iteration == iters:
            return Checkpoint(iteration, path / ADAPTER_WEIGHTS, None)
        if state.is_file():
            resumable = Checkpoint(iteration, path / ADAPTER_WEIGHTS, state)
    return resumable


def reseed(seed: int, iteration: int) -> None:
    """mlx's random key from here on (dropout): a function of the seed and the iteration."""
    import mlx.core as mx

    mx.random.seed(seed * 1_000_003 + iteration)


class TrainingState:
    """Hands mlx-lm's trainer its training batches (`batches`, its `iterate_batches`), starting
    at `start` in the data order, and saves the optimizer state beside every checkpoint it
    writes (rank 0 only). The trainer counts iterations from 1 in every session, so a resumed
    session's trainer writes into a folder of its own (`trainer_file`), and each checkpoint
    moves from there under the run's iteration number: a file cut short by Ctrl-C there can
    never pass for an earlier checkpoint."""

    def __init__(self, model: Any, optimizer: Any, settings: Any, adapter_dir: Path, rank: int):
        self.model, self.optimizer, self.settings = model, optimizer, settings
        self.adapter_dir, self.rank = adapter_dir, rank
        self.start = 0
        self.trained_tokens = 0  # at the checkpoint resumed from, so the count continues
        self.latest_tokens = 0  # as of the last report

    @property
    def trainer_file(self) -> Path:
        """Where mlx-lm's trainer saves the adapter (its checkpoints go beside it)."""
        if not self.start:
            return self.adapter_dir / ADAPTER_WEIGHTS
        return self.adapter_dir / f"resumed-at-{self.start:07d}" / ADAPTER_WEIGHTS

    def restore(self, checkpoint: Checkpoint) -> None:
        """The adapter weights, optimizer state and token count of `checkpoint`."""
        import mlx.core as mx
        from mlx.utils import tree_unflatten

        if checkpoint.optimizer is None:
            raise UserError(f"{checkpoint.weights.parent} has no optimizer state to resume from")
        for path in (checkpoint.weights, checkpoint.optimizer):
            if not path.is_file():  # another machine's rank: the files live beside rank 0
                raise UserError(f"{path} cannot be read here: resuming needs it on every rank")
        self.model.load_weights(str(checkpoint.weights), strict=False)
        state, metadata = mx.load(str(checkpoint.optimizer), return_metadata=True)
        assert isinstance(state, dict) and isinstance(metadata, dict)  # a .safetensors file
        self.optimizer.state = tree_unflatten(list(state.items()))
        self.start = checkpoint.iteration
        self.trained_tokens = self.latest_tokens = int(metadata.get("trained_tokens", 0))
        reseed(self.settings.seed, self.start)
        if self.rank == 0:  # an earlier resume's folder, left by its Ctrl-C, is of no use
            for stale in self.adapter_dir.glob("resumed-at-*"):
                shutil.rmtree(stale)
            self.trainer_file.parent.mkdir(parents=True)

    def shifted(self, info: dict) -> dict:
        """A report of the trainer's, in the run's iterations and token count."""
        info = {**info, "iteration": info["iteration"] + self.start}
        if "trained_tokens" in info:
            info["trained_tokens"] += self.trained_tokens
            self.latest_tokens = info["trained_tokens"]
        return info

    def finish(self) -> None:
        """After the trainer's last iteration: its checkpoint, and a resumed session's final
        adapter moved to the run's folder."""
        self.iteration_done(self.settings.iters)
        if self.start and self.rank == 0:
            self.trainer_file.replace(self.adapter_dir / ADAPTER_WEIGHTS)
            shutil.rmtree(self.trainer_file.parent)

    def batches(self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        """mlx-lm's iterate_batches; training's (loop=True) from a generator of its own."""
        from mlx_lm.tuner.trainer import iterate_batches

        if not loop:  # validation: as mlx-lm does it
            return iterate_batches(dataset, batch_size, max_seq_length, loop, seed, comm_group)
        return self._training_batches(
            iterate_batches(dataset, batch_size, max_seq_length, True, None, comm_group)
        )

    def _training_batches(self, batches):
        import numpy as np

        own = np.random.RandomState(self.settings.seed).get_state()
        position = 0
        while True:
            outer = np.random.get_state()
            np.random.set_state(own)
            try:
                batch = next(batches)
            finally:
                own = np.random.get_state()
                np.random.set_state(outer)
            position += 1
            if position <= self.start:
                continue
            yield batch
            # The trainer asks for the next batch once this iteration is done (saved too).
            self.iteration_done(position)

    def iteration_done(self, iteration: int) -> None:
        """After `iteration` (the run's count): at a checkpoint, name mlx-lm's file by the
        run's iteration and save the optimizer state beside it."""
        if iteration % self.settings.save_every:
            return
        reseed(self.settings.seed, iteration)
        if self.rank != 0:
            return
        import mlx.core as mx
        from mlx.utils import tree_flatten

        if self.start:
            session = self.trainer_file.parent / f"{iteration - self.start:07d}_{ADAPTER_WEIGHTS}"
            session.replace(self.adapter_dir / f"{iteration:07d}_{ADAPTER_WEIGHTS}")
            shutil.copyfile(self.trainer_file, self.adapter_dir / ADAPTER_WEIGHTS)
        mx.save_safetensors(
            str(self.adapter_dir / f"{iteration:07d}_{OPTIMIZER_STATE}"),
            dict(tree_flatten(self.optimizer.state)),
            metadata={"iteration": str(iteration), "trained_tokens": str(self.latest_tokens)},
        )

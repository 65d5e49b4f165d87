"""Every setting a script shows in --help, with its default, defined once.

Plain dataclasses with no heavy imports, so `--help` stays instant: the scripts build their
parsers from these defaults, and the package's runners take the same dataclasses.
"""

from dataclasses import asdict, dataclass

# Sent with every request: without them generation can run on to max_tokens.
STOP_SEQUENCES = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.0
    max_tokens: int | None = None  # overrides the suite's max_tokens when set
    stop: tuple[str, ...] = STOP_SEQUENCES
    seed: int | None = None  # sent with every request (epoch N uses seed + N - 1)

    def as_dict(self) -> dict:
        """As recorded in runs.config["sampling"]. The seed appears only when one was given, so
        unseeded runs keep the fingerprints they had before seeds existed."""
        settings = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
        }
        if self.seed is not None:
            settings["seed"] = self.seed
        return settings


@dataclass(frozen=True)
class EvalSettings:
    suite: str = "baseline"  # a name in suites/ or a path to a .toml file
    # Requests in flight: mlx_lm.server decodes up to 32 as one batch (--decode-concurrency 32);
    # at 8 or 16 the default eval, start-up included, fell short of a bare 16-thread client.
    concurrency: int = 32
    request_timeout_s: float = 300.0  # one prompt's whole answer
    retries: int = 6  # on connection resets only, with exponential backoff from 50 ms
    epochs: int = 1  # times each prompt is sampled; a prompt's score is the mean over its epochs
    tests_timeout_s: float = 10.0  # wall clock for one prompt's expect_tests run
    stop_grace_s: float = 30.0  # after Ctrl-C, how long answers in flight may still arrive


@dataclass(frozen=True)
class LoraSettings:
    iters: int = 200  # training iterations
    batch_size: int = 4  # examples per iteration
    learning_rate: float = 1e-4  # peak learning rate
    warmup: int = 0  # linear warm-up iterations, then cosine decay (0: constant rate)
    rank: int = 8  # LoRA rank
    scale: float = 20.0  # LoRA scale (mlx-lm's name for alpha/rank)
    dropout: float = 0.0
    num_layers: int | None = None  # transformer blocks to adapt, from the last (None: all)
    keys: tuple[str, ...] | None = None  # module names to adapt (None: mlx-lm's default)
    seed: int = 0  # weights init, batch order
    mask_prompt: bool = True  # loss on the assistant's answer only
    max_seq_length: int = 2048
    steps_per_report: int = 10
    steps_per_eval: int = 50  # validation every N iterations (and at 1 and the end)
    val_batches: int = 8  # batches per validation (-1: the whole split)
    save_every: int = 50  # checkpoint every N iterations
    # Recompute each block's activations in the backward pass: less memory, ~30% slower.
    grad_checkpoint: bool = False
    # What is optimised (labbench/train/preference/trainer.py): sft (mlx-lm), or through mlx-lm-lora
    # dpo / orpo (prompt, chosen, rejected pairs) or grpo (prompts scored by labbench's scorer).
    method: str = "sft"
    beta: float = 0.1  # dpo/orpo: preference strength; grpo: KL coefficient to the reference
    loss_type: str = "sigmoid"  # dpo's loss: sigmoid, hinge, ipo or dpop
    group_size: int = 4  # grpo: completions sampled per prompt
    max_completion_length: int = 128  # grpo: tokens sampled per completion
    temperature: float = 0.8  # grpo: sampling temperature
    rewards: tuple[str, ...] = ("score",)  # grpo: score (the eval's scorer), format, length
    reward_weights: tuple[float, ...] | None = None  # grpo: one weight per reward (None: all 1)

    def recorded(self) -> dict:
        """As written into a run's config and a sweep trial's identity: the settings the method
        reads (an SFT run has none of the preference settings, so SFT runs keep the
        fingerprints they had before them)."""
        used = METHOD_FIELDS.get(self.method, PREFERENCE_FIELDS)
        return {k: v for k, v in asdict(self).items() if k not in PREFERENCE_FIELDS or k in used}

    @classmethod
    def from_dict(cls, values: dict) -> "LoraSettings":
        """The settings as a run recorded them (asdict, through JSON); other keys are left out."""
        names = set(cls.__dataclass_fields__)
        known = {key: value for key, value in values.items() if key in names}
        for key in ("keys", "rewards", "reward_weights"):  # tuples, which JSON made lists
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        return cls(**known)


# The settings only a preference or RL method reads.
PREFERENCE_FIELDS = (
    "method",
    "beta",
    "loss_type",
    "group_size",
    "max_completion_length",
    "temperature",
    "rewards",
    "reward_weights",
)
METHODS = ("sft", "dpo", "orpo", "grpo")
METHOD_FIELDS = {
    "sft": (),
    "dpo": ("method", "beta", "loss_type"),
    "orpo": ("method", "beta"),
    "grpo": tuple(name for name in PREFERENCE_FIELDS if name != "loss_type"),
}
REWARDS = ("score", "format", "length")
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "dpop")


@dataclass(frozen=True)
class BenchSettings:
    iters: int = 12  # measured iterations + untimed ones
    # First iterations left out of the timing: JIT compilation and allocator warm-up (not
    # LoraSettings.warmup, the learning rate's).
    untimed_iters: int = 2
    batch_size: int = 4
    rank: int = 8
    max_seq_length: int = 2048
    seed: int = 0
    grad_checkpoint: bool = False
    dummy_examples: int = 64  # dummy dataset size when no --data is given

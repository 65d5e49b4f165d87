"""GRPO's rewards: a sampled completion is scored by the function that scores an eval.

mlx-lm-lora calls each reward as `f(prompts, completions, answer, types) -> list[float]`; here
`answer` carries each completion's prompt id (train/preference/trainer.py builds the data), so
the reward looks the prompt up in its suite and scores the completion with
labbench.eval.prompting.finish_row, exactly as an eval scores a server's answer: tool calls
parsed by labbench.eval.toolcalls, expect_tests run on the answer's code in the sandbox
(labbench/sandbox/execution.py, a separate contained process, never this one), then
labbench.eval.scoring. Rewards (--rewards, weighted by --reward-weights):
- score: the eval's score, 0..1;
- format: 1 when every `<tool_call>` block parses as a call and none is left unclosed, else 0;
- length: 1 - completion tokens / max_completion_length (shorter answers earn more).
Every step's completions, their scores and rewards go to the ledger (`rollouts`), and each
reward's mean per step to `train_metrics` (split "step").
"""

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import REWARDS, LoraSettings
from labbench.eval.prompting import finish_row, tests_workers
from labbench.eval.suitetypes import Suite
from labbench.eval.toolcalls import extract_tool_calls, has_unclosed_tool_call

RewardFunction = Callable[..., list[float]]


def score_completions(suite: Suite, prompt_ids: Sequence[str], completions: Sequence[str]):
    """Each completion as the eval's scored row (score, explanation, tests verdict...): the
    tests of different completions run at once, one sandbox each."""
    prompts = {prompt.id: prompt for prompt in suite.prompts}

    def scored(prompt_id: str, completion: str) -> dict:
        calls = extract_tool_calls(completion)
        row = {
            "response": completion,
            "tool_calls": [{"name": call.name, "arguments": call.arguments} for call in calls],
            "finish_reason": None,
        }
        return finish_row(suite, prompts[prompt_id], row)

    with ThreadPoolExecutor(max_workers=tests_workers()) as pool:
        return list(pool.map(scored, prompt_ids, completions))


def format_reward(completion: str) -> float:
    if has_unclosed_tool_call(completion):
        return 0.0
    return float(completion.count("<tool_call>") <= len(extract_tool_calls(completion)))


class RewardLog:
    """The rewards handed to mlx-lm-lora, recording each step into the ledger as it goes."""

    def __init__(
        self, db: Database, run_id: int, suite: Suite, settings: LoraSettings, tokenizer: Any
    ):
        unknown = [name for name in settings.rewards if name not in REWARDS]
        if unknown:
            raise UserError(f"--rewards {unknown[0]}: one of {', '.join(REWARDS)}")
        weights = settings.reward_weights or tuple(1.0 for _ in settings.rewards)
        if len(weights) != len(settings.rewards):
            raise UserError(
                f"--reward-weights: {len(weights)} weights for {len(settings.rewards)} rewards"
            )
        self.db, self.run_id, self.suite = db, run_id, suite
        self.names, self.weights = settings.rewards, weights
        self.tokenizer, self.max_tokens = tokenizer, settings.max_completion_length
        self.step = 0
        self.pending: dict[str, list[float]] = {}

    def functions(self) -> list[RewardFunction]:
        """One function per reward, in --rewards order, named as mlx-lm-lora reports them."""
        return [self._function(name) for name in self.names]

    def _function(self, name: str) -> RewardFunction:
        def reward(prompts, completions, answer, types=None) -> list[float]:
            if name == self.names[0]:
                self._score_step(list(answer), list(completions))
            return self.pending[name]

        reward.__name__ = name
        return reward

    def _score_step(self, prompt_ids: list[str], completions: list[str]) -> None:
        """Every reward of one step's completions, at the first reward's call; then recorded."""
        self.step += 1
        scored = score_completions(self.suite, prompt_ids, completions)
        rewards = {
            "score": lambda: [row["score"] or 0.0 for row in scored],
            "format": lambda: [format_reward(text) for text in completions],
            "length": lambda: [
                max(0.0, 1 - len(self.tokenizer.encode(text)) / self.max_tokens)
                for text in completions
            ],
        }
        self.pending = {name: rewards[name]() for name in self.names}
        totals = [
            sum(w * self.pending[n][i] for n, w in zip(self.names, self.weights, strict=True))
            for i in range(len(completions))
        ]
        with self.db.atomic():
            self.db.table("rollouts").insert_all(
                {
                    "run_id": self.run_id,
                    "step": self.step,
                    "prompt_id": prompt_id,
                    "completion": text,
                    "score": row["score"],
                    "explanation": row["explanation"],
                    "reward": total,
                }
                for prompt_id, text, row, total in zip(
                    prompt_ids, completions, scored, totals, strict=True
                )
            )
            self.db.table("train_metrics").insert_all(
                {
                    "run_id": self.run_id,
                    "iteration": self.step,
                    "split": "step",
                    "name": f"reward_{name}",
                    "value": sum(self.pending[name]) / len(completions),
                }
                for name in self.names
            )

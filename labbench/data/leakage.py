"""The leakage check: texts (e.g. training user messages) nearly equal to an eval suite's prompt.

A text is "nearly equal" to a suite prompt when, both normalised (NFKC, case folded, whitespace
collapsed), they are equal, or difflib's ratio is >= LEAK_RATIO (a copy with a path or a number
swapped), or at least LEAK_NGRAM_SHARE of the prompt's word LEAK_NGRAM-grams occur in the text
(a prompt pasted into a longer message; a prompt of fewer than LEAK_NGRAM words must occur
whole, in order). Pure Python.
"""

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from labbench.eval.suitetypes import Suite

LEAK_RATIO = 0.9
LEAK_NGRAM = 5
LEAK_NGRAM_SHARE = 0.5


@dataclass(frozen=True)
class Leak:
    index: int  # position of the text in the texts given to find_leaks
    text: str
    suite: str
    prompt_id: str
    prompt: str
    reason: str  # "equal", "ratio 0.93" or "5-gram overlap 0.60"


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _words(normalized: str) -> list[str]:
    return re.findall(r"\w+", normalized)


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _contains_run(words: list[str], run: tuple[str, ...]) -> bool:
    return any(tuple(words[i : i + len(run)]) == run for i in range(len(words) - len(run) + 1))


def find_leaks(texts: Sequence[str], suites: Sequence[Suite]) -> list[Leak]:
    """Texts (e.g. training user messages) nearly equal to a suite prompt (module docstring)."""
    prompts = []
    for suite in suites:
        for prompt in suite.prompts:
            norm = normalize(prompt.prompt)
            words = _words(norm)
            prompts.append((suite.name, prompt, norm, _ngrams(words, LEAK_NGRAM), len(words)))
    leaks = []
    for index, text in enumerate(texts):
        norm = normalize(text)
        words = _words(norm)
        grams = _ngrams(words, LEAK_NGRAM)
        matcher = difflib.SequenceMatcher(autojunk=False)
        matcher.set_seq2(norm)
        for suite_name, prompt, prompt_norm, prompt_grams, n_words in prompts:
            reason = None
            if norm == prompt_norm:
                reason = "equal"
            else:
                matcher.set_seq1(prompt_norm)
                if (
                    matcher.real_quick_ratio() >= LEAK_RATIO
                    and matcher.quick_ratio() >= LEAK_RATIO
                    and (ratio := matcher.ratio()) >= LEAK_RATIO
                ):
                    reason = f"ratio {ratio:.2f}"
                elif prompt_grams:
                    if n_words < LEAK_NGRAM:
                        if _contains_run(words, next(iter(prompt_grams))):
                            reason = "contains the whole prompt"
                    else:
                        share = len(prompt_grams & grams) / len(prompt_grams)
                        if share >= LEAK_NGRAM_SHARE:
                            reason = f"{LEAK_NGRAM}-gram overlap {share:.2f}"
            if reason:
                leaks.append(Leak(index, text, suite_name, prompt.id, prompt.prompt, reason))
                break
    return leaks

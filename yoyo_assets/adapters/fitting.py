"""Fitting training examples into `max_length` tokens without losing their answers.

trl truncates a tokenised example from its end, so a long prompt (a diff, a conversation) pushes
the answer out and the example is dropped. Here the prompt side is shortened instead: the middle
of its longest message is cut (its head, e.g. a diff's file names, and its tail, e.g. the turn
the answer replies to, are kept) and a visible marker stands where the cut was. An answer is cut
(from its end) only when it alone does not fit beside the shortest prompt. Lengths are counted
the way trl tokenises conversational examples: the chat template over prompt + answer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Stands where tokens were cut; `{n}` is how many.
MARKER = "\n[... {n} tokens cut ...]\n"
#: Tokens kept free below max_length: a cut re-tokenised can merge differently at its edges.
SLACK = 4
#: Tokens a chat template may add after an answer (end of turn, newline).
ANSWER_TURN_TOKENS = 4
#: Answer tokens that must remain for an example to be worth training on.
MIN_ANSWER_TOKENS = 1


@dataclass
class FitReport:
    """How a set of examples was fitted: counts of examples kept as they were, with the prompt
    shortened, with an answer cut, and dropped by reason."""

    unchanged: int = 0
    prompts_shortened: int = 0
    answers_cut: int = 0
    dropped: Counter = field(default_factory=Counter)

    def add(self, other: "FitReport") -> None:
        """Count `other`'s examples too."""
        self.unchanged += other.unchanged
        self.prompts_shortened += other.prompts_shortened
        self.answers_cut += other.answers_cut
        self.dropped.update(other.dropped)

    def as_dict(self) -> dict[str, Any]:
        """For a manifest and metadata."""
        return {"unchanged": self.unchanged, "prompts_shortened": self.prompts_shortened,
                "answers_cut": self.answers_cut, "dropped": dict(self.dropped)}


def chat_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False
             ) -> list[int]:
    """Token ids of `messages` through the chat template, as trl tokenises conversations."""
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                         add_generation_prompt=generation_prompt)["input_ids"]


def _answers(example: dict[str, list]) -> list[str]:
    """The answer keys of an SFT (`completion`) or DPO (`chosen`, `rejected`) example."""
    return ["completion"] if "completion" in example else ["chosen", "rejected"]


def sequence_length(tokenizer: Any, example: dict[str, list]) -> int:
    """Tokens of the longest prompt + answer sequence trl will build from `example`."""
    return max(len(chat_ids(tokenizer, example["prompt"] + example[key]))
               for key in _answers(example))


def _cut_middle(tokenizer: Any, text: str, cut: int) -> str:
    """`text` with `cut` tokens (plus the marker's own) taken out of its middle."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    marker_tokens = len(tokenizer.encode(MARKER.format(n=cut), add_special_tokens=False))
    keep = max(len(ids) - cut - marker_tokens, 0)
    head, tail = keep - keep // 2, keep // 2
    return (tokenizer.decode(ids[:head]) + MARKER.format(n=len(ids) - keep)
            + tokenizer.decode(ids[len(ids) - tail:] if tail else []))


def _cut_end(tokenizer: Any, text: str, keep: int) -> str:
    return tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)[:max(keep, 0)])


def _with_message(messages: list[dict[str, str]], index: int, content: str) -> list[dict]:
    return [{**m, "content": content} if i == index else m for i, m in enumerate(messages)]


def _shorten_prompt(tokenizer: Any, example: dict, budget: int) -> dict | None:
    """`example` with the middle of its longest prompt message cut so that it fits `budget`
    tokens, or None when it cannot. Each pass cuts the original message a little deeper: a
    cut's edges can re-tokenise a token or two longer than counted."""
    prompt = example["prompt"]
    longest = max(range(len(prompt)), key=lambda i: len(prompt[i]["content"]))
    original, cut = prompt[longest]["content"], 0
    for _ in range(4):
        over = sequence_length(tokenizer, example) - budget
        if over <= 0:
            return example
        cut += over + 2
        example = {**example, "prompt": _with_message(prompt, longest,
                                                      _cut_middle(tokenizer, original, cut))}
    return None


def fit_example(tokenizer: Any, example: dict[str, list], max_length: int
                ) -> tuple[dict | None, str]:
    """Fit one conversational example (trl's prompt-completion or preference format) into
    `max_length` tokens. Returns (example or None, outcome), outcome one of "unchanged",
    "prompt shortened", "answer cut", or the reason it was dropped ("empty answer", "prompt
    does not fit")."""
    if any(not "".join(m["content"] for m in example[k]).strip() for k in _answers(example)):
        return None, "empty answer"
    budget = max_length - SLACK
    if sequence_length(tokenizer, example) <= budget:
        return example, "unchanged"
    outcome = "prompt shortened"
    # Room for an answer beside the prompt with its longest message reduced to the marker,
    # less the template's tokens that close the answer's turn.
    prompt_floor = len(chat_ids(tokenizer, [{**m, "content": MARKER.format(n=100000)}
                                        for m in example["prompt"]], True))
    room = budget - prompt_floor - ANSWER_TURN_TOKENS
    for key in _answers(example):
        text = example[key][-1]["content"]
        if len(tokenizer.encode(text, add_special_tokens=False)) > room:
            if room < MIN_ANSWER_TOKENS:
                return None, "prompt does not fit"
            example = {**example, key: _with_message(example[key], len(example[key]) - 1,
                                                     _cut_end(tokenizer, text, room))}
            outcome = "answer cut"
    fitted = _shorten_prompt(tokenizer, example, budget)
    return (fitted, outcome) if fitted is not None else (None, "prompt does not fit")


def fit_examples(tokenizer: Any, examples: list[dict], max_length: int
                 ) -> tuple[list[dict | None], FitReport]:
    """`fit_example` over a list: the fitted examples (None where dropped, so callers can keep
    them aligned with their tuples) and the counts."""
    report, fitted = FitReport(), []
    for example in examples:
        result, outcome = fit_example(tokenizer, example, max_length)
        fitted.append(result)
        if outcome == "unchanged":
            report.unchanged += 1
        elif outcome == "prompt shortened":
            report.prompts_shortened += 1
        elif outcome == "answer cut":
            report.answers_cut += 1
        else:
            report.dropped[outcome] += 1
    return fitted, report

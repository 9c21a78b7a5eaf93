"""Per-tuple scores of a trained adapter and of its base on the held-out tuples.

The base is the same PEFT model with its adapter disabled, so both sides are scored by one
model in memory. Sequences are tokenised as trl tokenises conversational examples (the chat
template over prompt + answer; the answer starts where the tokenised prompt ends), so an SFT
tuple's loss here is what trl's eval loss is for a batch of one.

- SFT: mean cross-entropy (nats per token) of the answer tokens.
- DPO (sigmoid loss, Rafailov et al. 2023, trl's default `loss_type`): with log-probabilities
  summed over answer tokens, margin = beta * ((policy_chosen - ref_chosen) -
  (policy_rejected - ref_rejected)), loss = -log sigmoid(margin). The base is its own reference:
  margin 0, loss ln 2. Reward accuracy is the share of pairs with margin > 0 (trl's
  `rewards/accuracies`); preference accuracy the share whose chosen answer has the higher
  log-probability under the model itself, which is defined for the base too.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from .fitting import chat_ids


@dataclass
class SftScores:
    """Per held-out tuple, in tuple order: answer loss of the base and of the adapter (nats)."""

    base_losses: list[float]
    adapter_losses: list[float]


@dataclass
class DpoScores:
    """Per held-out pair, in tuple order: DPO loss of the base (ln 2) and of the adapter, the
    adapter's reward margin, and whether base and adapter each prefer the chosen answer."""

    base_losses: list[float]
    adapter_losses: list[float]
    margins: list[float]
    base_prefers_chosen: list[bool]
    adapter_prefers_chosen: list[bool]

    @property
    def reward_accuracy(self) -> float:
        return sum(m > 0 for m in self.margins) / len(self.margins)

    @property
    def reward_margin(self) -> float:
        return sum(self.margins) / len(self.margins)


def _answer_ids(tokenizer: Any, prompt: list[dict], answer: list[dict]) -> tuple[list[int], int]:
    """(prompt + answer token ids, index of the first answer token: where the tokenised prompt
    and prompt + answer first differ, as trl finds it)."""
    full = chat_ids(tokenizer, prompt + answer)
    return full, len(os.path.commonprefix([chat_ids(tokenizer, prompt, True), full]))


def answer_logprob(model: Any, tokenizer: Any, prompt: list[dict], answer: list[dict]
                   ) -> tuple[float, int]:
    """(sum of the answer tokens' log-probabilities in nats, number of answer tokens) under
    `model` for the chat `prompt` followed by `answer`."""
    import torch

    ids, start = _answer_ids(tokenizer, prompt, answer)
    tokens = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=tokens).logits[0, start - 1:-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    picked = logprobs.gather(1, tokens[0, start:].unsqueeze(1))
    return float(picked.sum()), len(ids) - start


def _both_sides(model: Any, score) -> tuple[Any, Any]:
    """`score()` with the adapter disabled (the base), then enabled."""
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter():
            base = score()
        return base, score()
    finally:
        model.train(was_training)


def score_sft(model: Any, tokenizer: Any, examples: list[dict]) -> SftScores:
    """Answer loss per held-out example (trl's prompt-completion format) for base and adapter.
    `model` is a PEFT model."""
    def losses() -> list[float]:
        out = []
        for example in examples:
            logprob, count = answer_logprob(model, tokenizer, example["prompt"],
                                            example["completion"])
            out.append(-logprob / count)
        return out

    base, adapter = _both_sides(model, losses)
    return SftScores(base, adapter)


def score_dpo(model: Any, tokenizer: Any, examples: list[dict], beta: float) -> DpoScores:
    """DPO loss, reward margin and preference per held-out pair (trl's preference format), the
    base being the PEFT `model` with its adapter disabled."""
    def logprobs() -> list[tuple[float, float]]:
        return [tuple(answer_logprob(model, tokenizer, e["prompt"], e[side])[0]
                      for side in ("chosen", "rejected")) for e in examples]

    reference, policy = _both_sides(model, logprobs)
    margins = [beta * ((pc - rc) - (pr - rr)) for (pc, pr), (rc, rr) in zip(policy, reference)]
    return DpoScores(
        base_losses=[math.log(2)] * len(examples),
        adapter_losses=[math.log1p(math.exp(-m)) if m > -30 else -m for m in margins],
        margins=margins, base_prefers_chosen=[c > r for c, r in reference],
        adapter_prefers_chosen=[c > r for c, r in policy])

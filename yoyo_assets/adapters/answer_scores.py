"""What users see: generated answers of base and adapter scored against the reference answers of
held-out SFT tuples. ROUGE-L F-measure (Lin 2004) through Google's `rouge-score` package, with
its Porter stemmer; exact match after case-folding and collapsing whitespace, which only means
something where answers are short (a commit message's subject line)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerScores:
    """Mean ROUGE-L F-measure (0..1) and exact-match rate of base and adapter answers over
    `prompts` held-out prompts, and each prompt's pair of ROUGE-L values."""

    prompts: int
    base_rouge_l: float
    adapter_rouge_l: float
    base_exact_match: float
    adapter_exact_match: float
    per_prompt: list[tuple[float, float]]


def _normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def score_answers(references: list[str], base: list[str], adapter: list[str]) -> AnswerScores:
    """Score two aligned answer lists against `references`.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    from rouge_score.rouge_scorer import RougeScorer

    if not references or not len(references) == len(base) == len(adapter):
        raise ValueError("need aligned, non-empty references and answers")
    scorer = RougeScorer(["rougeL"], use_stemmer=True)
    pairs = [(scorer.score(ref, b)["rougeL"].fmeasure, scorer.score(ref, a)["rougeL"].fmeasure)
             for ref, b, a in zip(references, base, adapter)]
    n = len(references)

    def exact(answers: list[str]) -> float:
        return sum(_normalised(r) == _normalised(x) for r, x in zip(references, answers)) / n

    return AnswerScores(
        prompts=n, base_rouge_l=sum(b for b, _ in pairs) / n,
        adapter_rouge_l=sum(a for _, a in pairs) / n, base_exact_match=exact(base),
        adapter_exact_match=exact(adapter), per_prompt=pairs)

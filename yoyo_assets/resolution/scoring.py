"""Scores of a clustering of mentions against labelled identities: B-cubed precision, recall
and F1 (Bagga and Baldwin, 1998: per mention, the share of its predicted cluster that is
truly its entity, and the share of its entity that its predicted cluster holds, averaged over
mentions) and pairwise precision and recall (over pairs of mentions put together)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Sequence


@dataclass(frozen=True)
class ClusterScores:
    """B-cubed and pairwise precision, recall, F1 of one clustering, and the mention count."""

    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    pairwise_precision: float
    pairwise_recall: float
    mentions: int


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def score_clusters(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> ClusterScores:
    """Scores of `predicted` cluster labels against `gold` ones, one of each per mention (the
    same position is the same mention).

    Raises:
        ValueError: the sequences differ in length, or are empty.
    """
    if len(predicted) != len(gold) or not gold:
        raise ValueError(f"{len(predicted)} predicted labels for {len(gold)} gold ones")
    clusters, entities = defaultdict(set), defaultdict(set)
    together = defaultdict(int)
    for index, (p, g) in enumerate(zip(predicted, gold)):
        clusters[p].add(index)
        entities[g].add(index)
        together[p, g] += 1
    precision = recall = 0.0
    for p, g in zip(predicted, gold):
        precision += together[p, g] / len(clusters[p])
        recall += together[p, g] / len(entities[g])
    precision, recall = precision / len(gold), recall / len(gold)
    pairs = lambda n: n * (n - 1) // 2  # noqa: E731
    both = sum(pairs(n) for n in together.values())
    predicted_pairs = sum(pairs(len(c)) for c in clusters.values())
    gold_pairs = sum(pairs(len(e)) for e in entities.values())
    return ClusterScores(precision, recall, _f1(precision, recall),
                         both / predicted_pairs if predicted_pairs else 1.0,
                         both / gold_pairs if gold_pairs else 1.0, len(gold))

"""The extraction adapter's gate: does a candidate extractor beat the one Phase 1 serves now, on
labelled documents of every stream, by more than chance?

Per document, the name-level ("any type") true positives, false positives and false negatives of
both extractors (`datagraph/extraction/quality.py`'s scoring). F1 is micro-averaged over a set
of documents (2·TP / (2·TP + FP + FN)). The difference candidate − serving gets a paired
bootstrap interval over documents (scipy.stats.bootstrap, percentile method, as the loss gate in
gate.py): the same resampled documents for both extractors. It is computed on the pooled set and on each stream.

A candidate passes when the pooled interval lies above 0 (it is better beyond chance; with the
gate statistic "mean", when the pooled difference itself is above 0) and no stream's interval
lies below 0 (it is worse nowhere beyond chance). A single pooled F1 cannot see a candidate that
is better on research notes and worse on contact records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datagraph.extraction.extractor import DocumentExtraction
from ..datagraph.extraction.quality import ANY_TYPE, LabelledDocument, QualityReport
from .gate import GateStatistic

#: The pooled set's name in `ExtractionVerdict.differences`.
POOLED = "pooled"


@dataclass(frozen=True)
class F1Difference:
    """On `documents` documents: each extractor's F1 (0..1) and the candidate − serving
    difference's `confidence` interval [low, high]."""

    documents: int
    serving_f1: float
    candidate_f1: float
    low: float
    high: float


@dataclass(frozen=True)
class ExtractionVerdict:
    """The differences on the pooled set (`POOLED`) and per stream, whether the candidate
    passes, and why (one sentence)."""

    differences: dict[str, F1Difference]
    confidence: float
    passed: bool
    reason: str


def document_counts(labelled: list[LabelledDocument], results: list[DocumentExtraction]):
    """(documents, 3) float array of "any type" TP, FP, FN per labelled document, in
    `labelled`'s order; a document without a result extracted nothing."""
    import numpy as np

    by_path = {r.path: r for r in results}
    rows = []
    for item in labelled:
        report = QualityReport()
        report.add(item.gold, by_path.get(item.document.path))
        score = report.scores[ANY_TYPE]
        rows.append((score.tp, score.fp, score.fn))
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def _f1(tp, fp, fn):
    import numpy as np

    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator, dtype=float),
                     where=denominator > 0)


def f1_difference(serving, candidate, confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0) -> F1Difference:
    """The paired bootstrap interval of F1(candidate) − F1(serving) over documents, from two
    (documents, 3) arrays of per-document TP, FP, FN (see `_counts`)."""
    import numpy as np
    from scipy.stats import bootstrap

    def difference(s_tp, s_fp, s_fn, c_tp, c_fp, c_fn, axis=-1):
        return (_f1(c_tp.sum(axis), c_fp.sum(axis), c_fn.sum(axis))
                - _f1(s_tp.sum(axis), s_fp.sum(axis), s_fn.sum(axis)))

    columns = (*serving.T, *candidate.T)
    s_f1, c_f1 = float(_f1(*serving.sum(0))), float(_f1(*candidate.sum(0)))
    point = c_f1 - s_f1
    low = high = point
    if len(serving) >= 2 and not np.array_equal(serving, candidate):
        interval = bootstrap(columns, difference, paired=True, vectorized=True,
                             confidence_level=confidence, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed)
                             ).confidence_interval
        if np.isfinite(interval.low) and np.isfinite(interval.high):
            low, high = float(interval.low), float(interval.high)
    return F1Difference(len(serving), round(s_f1, 4), round(c_f1, 4), round(low, 4),
                        round(high, 4))


def judge_extractors(labelled: list[LabelledDocument], serving: list[DocumentExtraction],
                     candidate: list[DocumentExtraction],
                     statistic: GateStatistic = "upper_bound", confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> ExtractionVerdict:
    """Judge `candidate` against `serving` (their extractions of `labelled`, matched by path):
    the pooled difference must be above 0 at its interval's lower bound (`statistic`
    "upper_bound", the loss gate's name for the same rule) or on average ("mean").

    Raises:
        ValueError: `labelled` is empty.
    """
    if not labelled:
        raise ValueError("the extraction gate needs labelled documents")
    s_counts = document_counts(labelled, serving)
    c_counts = document_counts(labelled, candidate)
    streams = sorted({item.document.stream for item in labelled})
    differences = {POOLED: f1_difference(s_counts, c_counts, confidence, resamples, seed)}
    for stream in streams:
        rows = [i for i, item in enumerate(labelled) if item.document.stream == stream]
        differences[stream] = f1_difference(s_counts[rows], c_counts[rows], confidence,
                                            resamples, seed)
    pooled = differences[POOLED]
    bound = pooled.low if statistic == "upper_bound" else pooled.candidate_f1 - pooled.serving_f1
    worse = [s for s in streams if differences[s].high < 0]
    if worse:
        d = differences[worse[0]]
        reason = (f"worse on {', '.join(worse)}: F1 {d.serving_f1:.3f} -> {d.candidate_f1:.3f}, "
                  f"interval [{d.low:+.3f}, {d.high:+.3f}] below 0")
    elif bound <= 0:
        reason = (f"not better ({statistic}): pooled F1 {pooled.serving_f1:.3f} -> "
                  f"{pooled.candidate_f1:.3f}, interval [{pooled.low:+.3f}, {pooled.high:+.3f}] "
                  f"reaches 0")
    else:
        reason = (f"better: pooled F1 {pooled.serving_f1:.3f} -> {pooled.candidate_f1:.3f}, "
                  f"interval [{pooled.low:+.3f}, {pooled.high:+.3f}] above 0, worse on no "
                  f"stream ({', '.join(streams)})")
    return ExtractionVerdict(differences, confidence, not worse and bound > 0, reason)

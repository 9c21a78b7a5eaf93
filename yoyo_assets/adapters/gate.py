"""The quality gate's statistic: the paired difference of held-out loss, adapter minus base, with
a bootstrap confidence interval of its mean (scipy.stats.bootstrap, percentile method: with
8-20 tuples the BCa correction is itself noisy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Below this many tuples in all, a version's gate is called weak in its metadata.
WEAK_GATE_TUPLES = 16

GateStatistic = Literal["upper_bound", "mean"]


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (adapter - base) held-out loss over `n` tuples, and its `confidence` interval
    [low, high] (nats per token for SFT, DPO loss for DPO). Negative is better."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def passes(self, statistic: GateStatistic) -> bool:
        """"upper_bound": the whole interval lies below 0; "mean": the mean does."""
        return (self.high if statistic == "upper_bound" else self.mean) < 0


def paired_difference(base: list[float], adapter: list[float], confidence: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """The paired difference of two per-tuple loss lists of the same tuples.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    import numpy as np
    from scipy.stats import bootstrap

    if len(base) != len(adapter) or not base:
        raise ValueError(f"need paired, non-empty losses (got {len(base)} and {len(adapter)})")
    diffs = np.asarray(adapter, dtype=float) - np.asarray(base, dtype=float)
    mean = float(diffs.mean())
    if len(diffs) < 2 or np.ptp(diffs) == 0:  # nothing to resample: the interval is the point
        return PairedDifference(mean, mean, mean, len(diffs), confidence)
    interval = bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=resamples,
                         method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return PairedDifference(mean, float(interval.low), float(interval.high), len(diffs),
                            confidence)

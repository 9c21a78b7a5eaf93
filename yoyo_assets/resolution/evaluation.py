"""The resolver measured on a labelled set: notes (`*.md`) and `gold.json` (note -> its
mentions, each `{"name", "type", "cluster"}`, equal clusters meaning the same entity; the format
of `../shared/corpora/resolution/`), with anchors made from contact records (`*.json`).

Four clusterings of the same person mentions, scored by the same scorer: today's graph key
(type and case-folded name), the surname alone (what naive merging does), the resolver's
rules, and the splink model of linkage.py (the probabilistic peer).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .linkage import link
from .names import fold, parse_person
from .resolver import Anchor, Mention, Resolution, Resolver, anchor_of_contact, attach_places
from .scoring import ClusterScores, score_clusters


@dataclass(frozen=True)
class ResolutionReport:
    """`scores` by clustering name, the resolver's `resolutions` (gold order) with their
    `gold` clusters, and `seconds`: the resolver's time over all mentions (wall clock)."""

    scores: dict[str, ClusterScores]
    resolutions: list[Resolution]
    gold: list[str]
    seconds: float


def load_anchors(contacts: Path) -> list[Anchor]:
    """The anchors of every contact record (`*.json`) in `contacts` that makes one."""
    anchors = (anchor_of_contact(json.loads(path.read_text(encoding="utf-8")))
               for path in sorted(contacts.glob("*.json")))
    return [anchor for anchor in anchors if anchor is not None]


def resolve_labelled(labelled: Path, anchors: list[Anchor]) -> ResolutionReport:
    """Resolve the gold person mentions of `labelled` (places: its gold location mentions,
    attached by `attach_places`) against `anchors`, and score the three clusterings."""
    gold = json.loads((labelled / "gold.json").read_text(encoding="utf-8"))
    resolver = Resolver(anchors)
    resolutions, clusters, seconds = [], [], 0.0
    for note, mentions in sorted(gold.items()):
        text = (labelled / note).read_text(encoding="utf-8")
        persons = [m for m in mentions if m["type"] == "person"]
        started = time.perf_counter()
        places = attach_places(text, [m["name"] for m in persons],
                               [m["name"] for m in mentions if m["type"] == "location"])
        resolutions += resolver.resolve_document(
            note, [Mention(note, m["name"], places.get(m["name"], ())) for m in persons], text)
        seconds += time.perf_counter() - started
        clusters += [m["cluster"] for m in persons]
    names = [r.mention.name for r in resolutions]
    links = link([r.mention for r in resolutions], anchors)
    scores = {
        "today's key (type + case-folded name)": score_clusters(
            [" ".join(n.casefold().split()) for n in names], clusters),
        "surname only": score_clusters([parse_person(n).surnames for n in names], clusters),
        "resolver": score_clusters([r.entity for r in resolutions], clusters),
        "splink (Fellegi-Sunter)": score_clusters(
            [x.anchor or f"apart:{n}" for n, x in enumerate(links)], clusters),
    }
    return ResolutionReport(scores, resolutions, clusters, seconds)


def undecidable(report: ResolutionReport) -> list[Resolution]:
    """The mentions the resolver kept apart because several anchors fit them."""
    return [r for r in report.resolutions if r.reason in ("ambiguous", "conflict")]


__all__ = ["ResolutionReport", "load_anchors", "resolve_labelled", "undecidable", "fold"]

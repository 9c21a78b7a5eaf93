"""A Fellegi–Sunter model of person mention -> anchor links, in splink (DuckDB here; the same
settings run on Spark): the probabilistic peer of the rules in resolver.py, measured beside them
on the same blocks by the same scorer (benchmarks/resolution.py, docs/benchmarks.md).

Each mention and each anchor is one record of the same shape: surname (the last surname word,
blocked on and compared with a term-frequency adjustment, so that sharing `Scott` says less
than sharing `Ocasio-Cortez`), given name (exact, a nickname or initial of it, Jaro-Winkler
>= 0.9, or different), role (chamber) and places (the place the document says of the mention;
the place an anchor represents). The u probabilities come from random pairs, the m
probabilities from expectation maximisation over the surname blocks (Fellegi & Sunter 1969;
splink's training guide: https://moj-analytical-services.github.io/splink/).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from .names import canonical_names, fold, parse_person
from .resolver import Anchor, Mention

#: A mention links to its best anchor when the model's match probability reaches this and no
#: other anchor of its block reaches AMBIGUOUS: when unsure, keep apart.
LINK_PROBABILITY = 0.95
AMBIGUOUS = 0.5


@dataclass(frozen=True)
class Link:
    """The model's verdict on one mention: `anchor` (an id, or None when kept apart), the best
    `probability` in its block (0.0 for an empty block) and `reason` (`match`, `ambiguous`,
    `weak`: best below LINK_PROBABILITY, `no candidate`)."""

    anchor: str | None
    probability: float
    reason: str


def _given_forms(given: tuple[str, ...]) -> list[str]:
    """Every given name and the canonical names its nicknames stand for (`bernie` ->
    `bernard`), and each one's initial, so a nickname or an initial meets its full name."""
    forms = set(given)
    for name in given:
        forms |= canonical_names(name)
    return sorted(forms | {f"{name[0]}." for name in forms if name})


def mention_record(key: int, mention: Mention) -> dict:
    """The splink record of `mention` (`key`: its unique id in the batch)."""
    name = parse_person(mention.name)
    given = (name.given,) if name.given else ()
    return {"unique_id": f"m{key}", "surname": name.surnames[-1] if name.surnames else None,
            "given": (name.given if name.given and len(name.given) > 1 else None),
            "given_forms": _given_forms(given) if given else None, "role": name.role,
            "places": sorted({fold(p) for p in mention.places}) or None}


def anchor_record(anchor: Anchor) -> dict:
    """The splink record of `anchor`."""
    return {"unique_id": anchor.id, "surname": anchor.surnames[-1] if anchor.surnames else None,
            "given": anchor.given_names[0] if anchor.given_names else None,
            "given_forms": _given_forms(anchor.given_names) or None, "role": anchor.role,
            "places": [fold(anchor.region)] if anchor.region else None}


def _settings(anchors: int):
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    given = cl.CustomComparison(output_column_name="given", comparison_levels=[
        cll.NullLevel("given_forms"), cll.ExactMatchLevel("given"),
        cll.ArrayIntersectLevel("given_forms", 1), cll.JaroWinklerLevel("given", 0.9),
        cll.ElseLevel()])
    places = cl.CustomComparison(output_column_name="places", comparison_levels=[
        cll.NullLevel("places"), cll.ArrayIntersectLevel("places", 1), cll.ElseLevel()])
    return SettingsCreator(
        link_type="link_only",
        # Each mention names at most one anchor: of its pairs, at most one in `anchors` is a
        # match (an estimate from full names alone would miss every short form).
        probability_two_random_records_match=1 / anchors,
        comparisons=[cl.ExactMatch("surname").configure(term_frequency_adjustments=True),
                     given, cl.ExactMatch("role"), places],
        blocking_rules_to_generate_predictions=[block_on("surname")],
        retain_intermediate_calculation_columns=False)


def link(mentions: list[Mention], anchors: list[Anchor], seed: int = 46,
         labels: list[str | None] | None = None) -> list[Link]:
    """The model's verdict for each of `mentions` (in order) against `anchors`: the model is
    trained on these records (u: up to 1e6 random pairs, `seed`; m: EM over the surname blocks
    and then the given-name blocks), then applied to the surname blocks.

    Raises ValueError when `mentions` or `anchors` is empty (nothing to train on)."""
    import pandas
    from splink import DuckDBAPI, Linker, block_on

    if not mentions or not anchors:
        raise ValueError("splink needs at least one mention and one anchor")
    db = DuckDBAPI()
    mention_rows = [mention_record(n, m) for n, m in enumerate(mentions)]
    anchor_rows = [anchor_record(a) for a in anchors]
    if labels is not None:
        for row, label in zip(mention_rows, labels):
            row["label"] = label
        for row in anchor_rows:
            row["label"] = row["unique_id"]
    tables = [db.register(pandas.DataFrame(rows), dataset_display_name=name) for name, rows in (
        ("anchors", anchor_rows), ("mentions", mention_rows))]
    linker = Linker(tables, _settings(len(anchors)), log_level=logging.ERROR)
    linker.table_management.register_term_frequency_lookup(
        db.register(pandas.DataFrame(_surname_frequencies(anchors))), "surname")
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=seed)
    if labels is not None:
        linker.training.estimate_m_from_label_column("label")
    else:
        for rule in (block_on("surname"), block_on("given")):
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
    scored = linker.inference.predict().as_pandas_dataframe()
    return _verdicts(len(mentions), scored)


#: How often a mention names someone outside the anchors who carries a surname only one anchor
#: carries, relative to one other anchor carrying it (see _surname_frequencies).
OUTSIDE_SHARE = 0.1


def _surname_frequencies(anchors: list[Anchor]) -> list[dict]:
    """The term frequency of each anchor surname as the chance that an anchor other than the
    one a mention names carries it: (anchors carrying it - 1 + OUTSIDE_SHARE) / anchors. The
    frequency over both tables (splink's default) counts the mentions themselves, and one over
    the anchors alone counts the named anchor as if it were a coincidence: each anchor being
    one entity, both leave a surname that only one anchor carries at p ~ 0.5."""
    counts = Counter(anchor.surnames[-1] for anchor in anchors if anchor.surnames)
    return [{"surname": name, "tf_surname": (count - 1 + OUTSIDE_SHARE) / len(anchors)}
            for name, count in counts.items()]


def _verdicts(count: int, scored) -> list[Link]:
    """One Link per mention `m0`..`m<count-1>` from splink's scored pairs."""
    by_mention: dict[str, list[tuple[float, str]]] = {}
    for row in scored.itertuples():
        left, right = str(row.unique_id_l), str(row.unique_id_r)
        mention, anchor = (right, left) if row.source_dataset_r == "mentions" else (left, right)
        by_mention.setdefault(mention, []).append((float(row.match_probability), anchor))
    links = []
    for key in range(count):
        ranked = sorted(by_mention.get(f"m{key}", ()), reverse=True)
        if not ranked:
            links.append(Link(None, 0.0, "no candidate"))
        elif len(ranked) > 1 and ranked[1][0] >= AMBIGUOUS:
            links.append(Link(None, ranked[0][0], "ambiguous"))
        elif ranked[0][0] < LINK_PROBABILITY:
            links.append(Link(None, ranked[0][0], "weak"))
        else:
            links.append(Link(ranked[0][1], ranked[0][0], "match"))
    return links

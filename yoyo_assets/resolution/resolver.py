"""Which entity each person mention names: linked to a record that carries an identifier (an
anchor: a contact record's `id`), or kept as an entity of its own.

Blocking: a mention is compared only with the anchors that share its surname (an index by
surname word), so the cost follows the mentions, not the anchors. Then each candidate either
fits what the mention says (its role word, given name, and the place the document attaches to
it) or is dropped; a candidate that fits is linked when it is the only one. Where several fit,
middle initials, then a group the document names (a committee) that only one of them belongs to
decides, as weaker evidence: when that weaker link claims an anchor that another surface form
of the same document already claims on its own name, it is undone. Whatever stays undecided is
kept apart, an entity of its own in its document: a wrong merge costs more than a missed one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from ..shared.text import without_unsafe_characters
from .names import ROLE_WORDS, PersonName, fold, parse_person, same_given_name

#: Characters that end a sentence between a mention and a place (a place after them is not
#: said of that mention).
_SENTENCE_END = re.compile(r"[.!?;]")


@dataclass(frozen=True)
class Anchor:
    """A record that carries an identifier, folded for comparison: `id` (the entity's id),
    display `name`, `given_names` (its first name and the other words before its surname),
    `surnames`, `role` (the chamber of the first names.ROLE_WORDS word of its title, or None),
    `region` (the place it represents, or None) and `groups` (committees) it belongs to."""

    id: str
    name: str
    given_names: tuple[str, ...]
    surnames: tuple[str, ...]
    role: str | None = None
    region: str | None = None
    groups: tuple[str, ...] = ()


def _clean(value):
    """Strings (also in lists) with control characters and lone surrogates as spaces: the
    graph refuses them (shared/text.py)."""
    if isinstance(value, str):
        return " ".join(without_unsafe_characters(value).split())
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def anchor_of_contact(record: dict) -> Anchor | None:
    """The anchor a contact record makes: its `id`, `name`, `first_name`, `last_name` (without
    one, the surname nameparser reads in `name`), `title`, `represents` and `committees` (a
    committee's parenthesis, such as `(Ranking Member)`, dropped), control characters and lone
    surrogates as spaces. None without an `id` or a `name`, or when no surname can be read."""
    if not all(isinstance(record.get(key), str) and record[key].strip() for key in
               ("id", "name")):
        return None
    record = {key: _clean(value) for key, value in record.items()}
    last_name = record.get("last_name")
    surnames = (tuple(fold(last_name).split()) if isinstance(last_name, str) and last_name.strip()
                else parse_person(record["name"]).surnames)
    if not surnames:
        return None
    words = [fold(word) for word in record["name"].replace(",", " ").split()]
    given = [word for word in words if word not in surnames and word not in ("jr", "sr")]
    if isinstance(record.get("first_name"), str):
        given.insert(0, fold(record["first_name"]))
    title_words = fold(str(record.get("title") or "")).split()
    role = next((ROLE_WORDS[word] for word in title_words if word in ROLE_WORDS), None)
    groups = tuple(str(g).split(" (")[0] for g in record.get("committees") or ()
                   if isinstance(g, str))
    region = record.get("represents") if isinstance(record.get("represents"), str) else None
    return Anchor(record["id"], record["name"], tuple(dict.fromkeys(given)), surnames, role,
                  region, groups)


@dataclass(frozen=True)
class Mention:
    """One person mention: its `document` (SHA-256 or name), the surface `name` as written,
    and `places`: the locations its document says of it (`attach_places`)."""

    document: str
    name: str
    places: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """Where a mention went: `entity` (an anchor's id, `person:<given> <surname>` for a full
    name no anchor fits, or `mention:<document>:<name>` for a mention kept apart), `anchored`
    (linked to an anchor) and `reason`: `name`, `name+place`, `group` (the weaker evidence),
    `ambiguous` (several anchors fit), `no anchor`, `conflict` (a weaker link undone)."""

    mention: Mention
    entity: str
    anchored: bool
    reason: str


def attach_places(text: str, persons: Iterable[str], places: Iterable[str]) -> dict[str, tuple]:
    """person surface -> the places `text` says of it: each occurrence of a place goes to the
    nearest occurrence of a person before it in the same sentence (`X of Ohio`, `X (Ohio)`,
    `X's office in Ohio`)."""
    occurrences = [(m.end(), person) for person in set(persons)
                   for m in re.finditer(re.escape(person), text)]
    attached: dict[str, list] = defaultdict(list)
    for place in set(places):
        for found in re.finditer(re.escape(place), text):
            before = [(end, person) for end, person in occurrences if end <= found.start()
                      and not _SENTENCE_END.search(text, end, found.start())]
            if before:
                attached[max(before)[1]].append(place)
    return {person: tuple(sorted(set(found))) for person, found in attached.items()}


@dataclass
class Resolver:
    """Resolves person mentions against `anchors` (blocking by surname word)."""

    anchors: list[Anchor]
    _by_surname: dict[str, list[Anchor]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_surname = defaultdict(list)
        for anchor in self.anchors:
            for word in anchor.surnames:
                self._by_surname[word].append(anchor)

    def fitting(self, name: PersonName) -> tuple[PersonName, list[Anchor]]:
        """The anchors that share the mention's surname words (blocking) and fit its role and
        given name, and the name as read for them: a surname of two words (`Sen. Blunt
        Rochester`, `Van Drew`) is read as such where an anchor's surname holds both and none
        fits the first as a given name."""
        if not name.surnames:
            return name, []
        found = [a for a in self._by_surname.get(name.surnames[-1], ())
                 if set(name.surnames) <= set(a.surnames)]
        fit = [a for a in found if _fits(name, a)]
        if name.given and not fit:
            longer = PersonName(name.role, None, (), (name.given, *name.surnames))
            compound = [a for a in found if set(longer.surnames) <= set(a.surnames)]
            if compound:
                return longer, [a for a in compound if _fits(longer, a)]
        return name, fit

    def resolve_document(self, document: str, mentions: list[Mention],
                         text: str = "") -> list[Resolution]:
        """The resolutions of one document's person mentions, in order; `text`, the
        document's text, is searched for the anchors' groups."""
        first = {m.name: self._resolve(m, text.lower()) for m in mentions}
        strong = defaultdict(set)
        for surface, resolution in first.items():
            if resolution.anchored and resolution.reason != "group":
                strong[resolution.entity].add(surface)
        for surface, resolution in first.items():
            if resolution.reason == "group" and strong[resolution.entity] - {surface}:
                first[surface] = _apart(resolution.mention, "conflict")
        return [first[m.name] for m in mentions]

    def _resolve(self, mention: Mention, text: str) -> Resolution:
        name, fitting = self.fitting(parse_person(mention.name))
        places = {fold(place) for place in mention.places}
        reason = "name"
        if places:  # a place said of the mention that contradicts an anchor's drops it
            fitting = [a for a in fitting if not a.region or fold(a.region) in places]
            reason = "name+place" if any(a.region for a in fitting) else reason
        if len(fitting) > 1 and name.middle:
            initialled = [a for a in fitting if _same_middle(name, a)]
            fitting = initialled or fitting
        if len(fitting) > 1:
            grouped = [a for a in fitting if any(g.lower() in text for g in a.groups)]
            fitting, reason = (grouped, "group") if len(grouped) == 1 else (fitting, reason)
        if len(fitting) == 1:
            return Resolution(mention, fitting[0].id, True, reason)
        if fitting:
            return _apart(mention, "ambiguous")
        if name.given:
            return Resolution(mention, f"person:{name.given} {' '.join(name.surnames)}", False,
                              "no anchor")
        return _apart(mention, "no anchor")


def _fits(name: PersonName, anchor: Anchor) -> bool:
    """True when neither the role nor the given name the mention says contradicts the
    anchor. (Middle initials only break ties: sources disagree on them, as `Laurel F. Lee`
    and `Laurel M. Lee` for one member.)"""
    if name.role and anchor.role and name.role != anchor.role:
        return False
    return not name.given or any(same_given_name(name.given, g) for g in anchor.given_names)


def _same_middle(name: PersonName, anchor: Anchor) -> bool:
    """True when each middle name or initial of the mention starts a given name of the
    anchor's after its first."""
    return all(any(g.startswith(m[0]) for g in anchor.given_names[1:]) for m in name.middle)


def _apart(mention: Mention, reason: str) -> Resolution:
    return Resolution(mention, f"mention:{mention.document}:{fold(mention.name)}", False, reason)

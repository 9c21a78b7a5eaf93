"""Identities in the graph: which real-world entity each person mention names (issue 46),
inside the writer's open transaction.

`Identity` nodes are the entities a mention resolves to: an anchor (a contact record's `id`,
`anchored`, with the name parts and context resolution/resolver.py compares), a full name no
anchor fits (`person:<given> <surname>`), or a mention kept apart in its document
(`mention:<document>:<name>`). `REFERS_TO` links a document to the identity one of its
surface forms names, with the resolver's reason and the night; a document's form is resolved
once, so re-runs and later nights change nothing already decided. `IdentitySurname` nodes (one
per surname word, primary key) point at the anchors holding that word: the resolver's blocking
look-up is a key look-up, so a night costs what its mentions name, not the history.

Operators' decisions (identity_decisions.py) are applied in the same transaction, after the
night's resolutions, each once (an `IdentityDecision` node): `same` keeps the older identity
(first named on an earlier night; then the anchored one; then the one the decision names
first), moves the other's `REFERS_TO` to it and points it there (`merged_into`), so its id
still resolves and later resolutions to it land on the kept one; `not_same` moves that
document's form to an identity of its own. A decision whose identities or form the graph does
not hold yet waits for a later night.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...resolution.names import fold
from ...resolution.resolver import Anchor
from ..corrections.identity_decisions import IdentityDecision

Query = Callable[..., list[list[Any]]]

SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Identity(id STRING PRIMARY KEY, name STRING, type STRING, "
    "anchored BOOLEAN, given_names STRING[], surnames STRING[], role STRING, region STRING, "
    "groups STRING[], first_night STRING, last_night STRING, document_count INT64, "
    "merged_into STRING)",
    "CREATE NODE TABLE IF NOT EXISTS IdentityDecision(id STRING PRIMARY KEY, kind STRING, "
    "identities STRING[], document STRING, name STRING, by STRING, at STRING, night STRING, "
    "outcome STRING)",
    "CREATE NODE TABLE IF NOT EXISTS IdentitySurname(word STRING PRIMARY KEY)",
    "CREATE REL TABLE IF NOT EXISTS SURNAME_OF(FROM IdentitySurname TO Identity)",
    "CREATE REL TABLE IF NOT EXISTS REFERS_TO(FROM Document TO Identity, name STRING, "
    "reason STRING, night STRING)",
)

KNOWN_IDENTITY = "MATCH (i:Identity {id: $id}) RETURN i.anchored"
CREATE_ANCHOR = """
CREATE (:Identity {id: $id, name: $name, type: 'person', anchored: true, given_names: $given,
                   surnames: $surnames, role: $role, region: $region, groups: $groups,
                   first_night: $night, last_night: $night, document_count: 0, merged_into: ''})
"""
UPDATE_ANCHOR = """
MATCH (i:Identity {id: $id})
SET i.name = $name, i.anchored = true, i.given_names = $given, i.surnames = $surnames,
    i.role = $role, i.region = $region, i.groups = $groups
"""
# Two statements: LadybugDB 0.22 cannot MERGE a relationship after a MERGE of one of its ends
# in the same statement ("Cannot evaluate expression with type VARIABLE").
SURNAME_WORDS = "UNWIND $surnames AS word MERGE (:IdentitySurname {word: word})"
LINK_SURNAMES = """
MATCH (i:Identity {id: $id})
WITH i
UNWIND $surnames AS word
MATCH (s:IdentitySurname {word: word})
MERGE (s)-[:SURNAME_OF]->(i)
"""
# An anchor an operator merged into another is no candidate: its kept identity is (else a
# short form that fits both would be kept apart as ambiguous).
NAMED = """
UNWIND $words AS word
MATCH (:IdentitySurname {word: word})-[:SURNAME_OF]->(i:Identity)
WHERE i.merged_into = ''
RETURN DISTINCT i.id, i.name, i.given_names, i.surnames, i.role, i.region, i.groups
"""
REFERRED = ("MATCH (d:Document {sha256: $sha256})-[r:REFERS_TO {name: $name}]->(i:Identity) "
            "RETURN i.id")
# The forms of a set of documents resolved before, in one statement: LadybugDB plans a
# traversal from one document as a scan of the whole Identity table (17 ms a form at 300,000
# identities, benchmarks/identity_night.py), so a night asks once, not once a form.
REFERRED_FORMS = """
UNWIND $hashes AS h
MATCH (d:Document {sha256: h})-[r:REFERS_TO]->(i:Identity)
RETURN d.sha256, r.name, i.id
"""
CREATE_IDENTITY = """
CREATE (:Identity {id: $id, name: $name, type: $type, anchored: false, given_names: [],
                   surnames: [], role: '', region: '', groups: [], first_night: $night,
                   last_night: $night, document_count: 0, merged_into: ''})
"""
REFER = """
MATCH (d:Document {sha256: $sha256})
WITH d
MATCH (i:Identity {id: $id})
CREATE (d)-[:REFERS_TO {name: $name, reason: $reason, night: $night}]->(i)
"""
COUNT_DOCUMENT = """
MATCH (i:Identity {id: $id})
SET i.document_count = i.document_count + $new_document,
    i.last_night = CASE WHEN $night > i.last_night THEN $night ELSE i.last_night END
"""


IDENTITY = """
MATCH (i:Identity {id: $id})
RETURN i.name, i.type, i.anchored, i.first_night, i.last_night, i.document_count
"""
REFERRING = """
MATCH (d:Document)-[r:REFERS_TO]->(i:Identity {id: $id})
RETURN d.sha256, d.path, d.night, r.name, r.reason, r.night ORDER BY r.night, d.sha256, r.name
LIMIT $limit
"""
# The decisions that named the identity, or whose outcome (`merged <id> into <id>`, `moved to
# <id>`: _merge and _apart) names it whole, not as the prefix of a longer id: a small table (one
# node per operator's decision), read whole.
DECISIONS_ON = """
MATCH (x:IdentityDecision)
WHERE list_contains(x.identities, $id) OR x.outcome = $moved OR x.outcome ENDS WITH $kept
      OR x.outcome STARTS WITH $merged
RETURN x.id, x.kind, x.by, x.at, x.night, x.outcome ORDER BY x.night, x.at, x.id
"""


@dataclass(frozen=True)
class IdentityView:
    """One identity as the reads return it: its id, display name, type, whether a record
    anchors it, the nights it was first and last named, how many documents refer to it, the
    `forms` documents used for it (each once, first seen first), `references`: (document
    SHA-256, path, document night, form, reason, night resolved), at most the read's limit, and
    `decisions`: the operators' decisions that merged or split it, oldest first (decision id,
    kind, by, at, night applied, outcome)."""

    id: str
    name: str
    type: str
    anchored: bool
    first_night: str
    last_night: str
    document_count: int
    forms: list[str]
    references: list[tuple[str, str, str, str, str, str]]
    decisions: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)


def identity_view(query: Query, identity: str, limit: int) -> IdentityView | None:
    """The identity `identity` with up to `limit` of its references; None if unknown."""
    found = query(IDENTITY, {"id": identity})
    if not found:
        return None
    name, type_, anchored, first, last, count = found[0]
    references = [tuple(row) for row in query(REFERRING, {"id": identity, "limit": limit})]
    forms = list(dict.fromkeys(row[3] for row in references))
    decisions = [tuple(row) for row in query(DECISIONS_ON, {
        "id": identity, "moved": f"moved to {identity}", "kept": f" into {identity}",
        "merged": f"merged {identity} into "})]
    return IdentityView(identity, name, type_, bool(anchored), first, last, int(count), forms,
                        references, decisions)


@dataclass(frozen=True)
class ResolvedMention:
    """One surface form of one document and the identity it names: `document` (SHA-256),
    `name` as written, `type`, `identity` id and its display `identity_name` (an anchor's
    record name, or the form itself), `reason` (resolver.Resolution's)."""

    document: str
    name: str
    type: str
    identity: str
    identity_name: str
    reason: str


@dataclass
class IdentityStats:
    """What one `record_resolutions` did: forms resolved now, forms resolved before (nothing
    changed), identities created, forms linked to an anchor, forms kept apart; operators'
    decisions applied now, applied before, waiting for their identities or form, and moot
    (the form no longer named that identity)."""

    resolved: int = 0
    already_resolved: int = 0
    identities_created: int = 0
    anchored: int = 0
    kept_apart: int = 0
    decisions_applied: int = 0
    decisions_already_applied: int = 0
    decisions_waiting: int = 0
    decisions_moot: int = 0


def record_anchor(query: Query, anchor: Anchor, night: str) -> bool:
    """Create or update the identity of `anchor`, with its surname words; True if created."""
    values = {"id": anchor.id, "name": anchor.name, "given": list(anchor.given_names),
              "surnames": list(anchor.surnames), "role": anchor.role or "",
              "region": anchor.region or "", "groups": list(anchor.groups)}
    known = query(KNOWN_IDENTITY, {"id": anchor.id})
    query(UPDATE_ANCHOR if known else CREATE_ANCHOR, values if known else {**values,
                                                                          "night": night})
    query(SURNAME_WORDS, {"surnames": list(anchor.surnames)})
    query(LINK_SURNAMES, {"id": anchor.id, "surnames": list(anchor.surnames)})
    return not known


def anchors_named(query: Query, words: list[str]) -> list[Anchor]:
    """The anchors whose surname holds one of `words` (folded surname words), except those
    merged into another identity."""
    return [Anchor(id_, name, tuple(given), tuple(surnames), role or None, region or None,
                   tuple(groups))
            for id_, name, given, surnames, role, region, groups in
            query(NAMED, {"words": sorted(set(words))})]


def record_resolutions(query: Query, resolved: list[ResolvedMention], night: str,
                       stats: IdentityStats) -> None:
    """Link each document's form to its identity (created if new, followed to the identity an
    operator merged it into) unless the form was resolved before; count them in `stats`."""
    hashes = sorted({r.document for r in resolved})
    forms = {(sha256, name): identity for sha256, name, identity in
             query(REFERRED_FORMS, {"hashes": hashes})} if hashes else {}
    referred = {(sha256, identity) for (sha256, _), identity in forms.items()}
    for mention in resolved:
        if (mention.document, mention.name) in forms:
            stats.already_resolved += 1
            continue
        target = kept_identity(query, mention.identity)
        reason = mention.reason if target == mention.identity else f"{mention.reason}; merged"
        known = query(KNOWN_IDENTITY, {"id": target})
        if not known:
            query(CREATE_IDENTITY, {"id": target, "name": mention.identity_name,
                                    "type": mention.type, "night": night})
            stats.identities_created += 1
        query(REFER, {"sha256": mention.document, "id": target, "name": mention.name,
                      "reason": reason, "night": night})
        query(COUNT_DOCUMENT, {"id": target, "night": night,
                               "new_document": int((mention.document, target) not in referred)})
        forms[mention.document, mention.name] = target
        referred.add((mention.document, target))
        stats.resolved += 1
        stats.anchored += bool(known and known[0][0])
        stats.kept_apart += target.startswith("mention:")


MERGED_INTO = "MATCH (i:Identity {id: $id}) RETURN i.merged_into, i.first_night, i.anchored"
DECIDED = "MATCH (x:IdentityDecision {id: $id}) RETURN x.outcome"
RECORD_DECISION = """
CREATE (:IdentityDecision {id: $id, kind: $kind, identities: $identities, document: $document,
                           name: $name, by: $by, at: $at, night: $night, outcome: $outcome})
"""
REFERENCES_TO = """
MATCH (d:Document)-[r:REFERS_TO]->(i:Identity {id: $id})
RETURN d.sha256, r.name, r.reason, r.night
"""
UNREFER_ALL = "MATCH (:Document)-[r:REFERS_TO]->(:Identity {id: $id}) DELETE r"
UNREFER_FORM = ("MATCH (:Document {sha256: $sha256})-[r:REFERS_TO {name: $name}]->(:Identity) "
                "DELETE r")
RECOUNT = """
MATCH (i:Identity {id: $id})
OPTIONAL MATCH (d:Document)-[:REFERS_TO]->(i)
WITH i, count(DISTINCT d) AS documents
SET i.document_count = documents
"""
MERGE_INTO = "MATCH (i:Identity {id: $id}) SET i.merged_into = $kept, i.document_count = 0"


def kept_identity(query: Query, identity: str) -> str:
    """`identity`, or the identity operators merged it into (followed to the end)."""
    seen = {identity}
    while True:
        found = query(MERGED_INTO, {"id": identity})
        if not found or not found[0][0] or found[0][0] in seen:
            return identity
        identity = found[0][0]
        seen.add(identity)


def _merge(query: Query, decision: IdentityDecision) -> str:
    """Apply a `same` decision; its outcome."""
    named = [kept_identity(query, i) for i in decision.identities]
    found = {i: query(MERGED_INTO, {"id": i}) for i in named}
    if not all(found.values()):
        return "waiting"
    if named[0] == named[1]:
        return "already one"
    # The older identity is kept (first named on an earlier night), then the anchored one,
    # then the one the decision names first.
    kept, merged = sorted(named, key=lambda i: (found[i][0][1], not found[i][0][2],
                                                named.index(i)))
    for sha256, name, reason, night in query(REFERENCES_TO, {"id": merged}):
        query(REFER, {"sha256": sha256, "id": kept, "name": name, "night": night,
                                    "reason": f"{reason}; same as {kept} ({decision.by})"})
    query(UNREFER_ALL, {"id": merged})
    query(MERGE_INTO, {"id": merged, "kept": kept})
    query(RECOUNT, {"id": kept})
    return f"merged {merged} into {kept}"


def _apart(query: Query, decision: IdentityDecision, night: str) -> str:
    """Apply a `not_same` decision; its outcome."""
    found = query(REFERRED, {"sha256": decision.document, "name": decision.name})
    if not found:
        return "waiting"
    current, said = found[0][0], kept_identity(query, decision.identities[0])
    if kept_identity(query, current) != said:
        return "moot"
    own = f"mention:{decision.document}:{fold(decision.name)}"
    if not query(KNOWN_IDENTITY, {"id": own}):
        query(CREATE_IDENTITY, {"id": own, "name": decision.name, "type": "person",
                                "night": night})
    query(UNREFER_FORM, {"sha256": decision.document, "name": decision.name})
    query(REFER, {"sha256": decision.document, "id": own, "name": decision.name,
                                "night": night,
                                "reason": f"not {current} ({decision.by})"})
    for identity in (current, own):
        query(RECOUNT, {"id": identity})
    return f"moved to {own}"


def apply_decision(query: Query, decision: IdentityDecision, night: str,
                   stats: IdentityStats) -> None:
    """Apply an operator's decision once (see the module's docstring); count it in `stats`.
    A decision waiting for its identities or form is not recorded, so a later night applies
    it."""
    if query(DECIDED, {"id": decision.id}):
        stats.decisions_already_applied += 1
        return
    outcome = (_merge(query, decision) if decision.kind == "same"
               else _apart(query, decision, night))
    if outcome == "waiting":
        stats.decisions_waiting += 1
        return
    query(RECORD_DECISION, {**decision.model_dump(exclude={"id", "identities", "kind"}),
                            "id": decision.id, "kind": decision.kind,
                            "identities": list(decision.identities), "night": night,
                            "outcome": outcome})
    if outcome == "moot":
        stats.decisions_moot += 1
    else:
        stats.decisions_applied += 1

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..resolution.resolver import Anchor

Query = Callable[..., list[list[Any]]]

SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Identity(id STRING PRIMARY KEY, name STRING, type STRING, "
    "anchored BOOLEAN, given_names STRING[], surnames STRING[], role STRING, region STRING, "
    "groups STRING[], first_night STRING, last_night STRING, document_count INT64)",
    "CREATE NODE TABLE IF NOT EXISTS IdentitySurname(word STRING PRIMARY KEY)",
    "CREATE REL TABLE IF NOT EXISTS SURNAME_OF(FROM IdentitySurname TO Identity)",
    "CREATE REL TABLE IF NOT EXISTS REFERS_TO(FROM Document TO Identity, name STRING, "
    "reason STRING, night STRING)",
)

KNOWN_IDENTITY = "MATCH (i:Identity {id: $id}) RETURN i.anchored"
CREATE_ANCHOR = """
CREATE (:Identity {id: $id, name: $name, type: 'person', anchored: true, given_names: $given,
                   surnames: $surnames, role: $role, region: $region, groups: $groups,
                   first_night: $night, last_night: $night, document_count: 0})
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
NAMED = """
UNWIND $words AS word
MATCH (:IdentitySurname {word: word})-[:SURNAME_OF]->(i:Identity)
RETURN DISTINCT i.id, i.name, i.given_names, i.surnames, i.role, i.region, i.groups
"""
REFERRED = ("MATCH (d:Document {sha256: $sha256})-[r:REFERS_TO {name: $name}]->(i:Identity) "
            "RETURN i.id")
DOCUMENT_REFERS = ("MATCH (d:Document {sha256: $sha256})-[:REFERS_TO]->(i:Identity {id: $id}) "
                   "RETURN count(*)")
CREATE_IDENTITY = """
CREATE (:Identity {id: $id, name: $name, type: $type, anchored: false, given_names: [],
                   surnames: [], role: '', region: '', groups: [], first_night: $night,
                   last_night: $night, document_count: 0})
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


@dataclass(frozen=True)
class IdentityView:
    """One identity as the reads return it: its id, display name, type, whether a record
    anchors it, the nights it was first and last named, how many documents refer to it, the
    `forms` documents used for it (each once, first seen first) and `references`: (document
    SHA-256, path, document night, form, reason, night resolved), at most the read's limit."""

    id: str
    name: str
    type: str
    anchored: bool
    first_night: str
    last_night: str
    document_count: int
    forms: list[str]
    references: list[tuple[str, str, str, str, str, str]]


def identity_view(query: Query, identity: str, limit: int) -> IdentityView | None:
    """The identity `identity` with up to `limit` of its references; None if unknown."""
    found = query(IDENTITY, {"id": identity})
    if not found:
        return None
    name, type_, anchored, first, last, count = found[0]
    references = [tuple(row) for row in query(REFERRING, {"id": identity, "limit": limit})]
    forms = list(dict.fromkeys(row[3] for row in references))
    return IdentityView(identity, name, type_, bool(anchored), first, last, int(count), forms,
                        references)


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
    changed), identities created, forms linked to an anchor, forms kept apart."""

    resolved: int = 0
    already_resolved: int = 0
    identities_created: int = 0
    anchored: int = 0
    kept_apart: int = 0


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
    """The anchors whose surname holds one of `words` (folded surname words)."""
    return [Anchor(id_, name, tuple(given), tuple(surnames), role or None, region or None,
                   tuple(groups))
            for id_, name, given, surnames, role, region, groups in
            query(NAMED, {"words": sorted(set(words))})]


def record_resolution(query: Query, resolved: ResolvedMention, night: str,
                      stats: IdentityStats) -> None:
    """Link the form to its identity (created if new) unless the document's form was
    resolved before; count it in `stats`."""
    if query(REFERRED, {"sha256": resolved.document, "name": resolved.name}):
        stats.already_resolved += 1
        return
    known = query(KNOWN_IDENTITY, {"id": resolved.identity})
    if not known:
        query(CREATE_IDENTITY, {"id": resolved.identity, "name": resolved.identity_name,
                                "type": resolved.type, "night": night})
        stats.identities_created += 1
    new_document = not query(DOCUMENT_REFERS, {"sha256": resolved.document,
                                               "id": resolved.identity})[0][0]
    query(REFER, {"sha256": resolved.document, "id": resolved.identity, "name": resolved.name,
                  "reason": resolved.reason, "night": night})
    query(COUNT_DOCUMENT, {"id": resolved.identity, "new_document": int(new_document),
                           "night": night})
    stats.resolved += 1
    stats.anchored += bool(known and known[0][0])
    stats.kept_apart += resolved.identity.startswith("mention:")

"""Operators' corrections applied to the graph, inside the writer's open transaction.

A corrected document's `MENTIONS` are replaced by the confirmed entities, each marked with who
confirmed it and when (`confirmed_by`, `confirmed_at`). Entity counts stay what they count: an
entity loses one document for each document whose correction drops it, and an entity that no
document names any more is deleted. A confirmed entity the extractor had found keeps its
mention count; one it had missed counts 1 (the operator saw it at least once).

Each applied correction becomes a `Correction` node (id, who, when, the night that applied it,
and what the extractor had answered before any correction: `extractor_answer`, JSON of
[name, type] pairs) linked to its document by `CORRECTS`: so re-applying the same correction
changes nothing, an older one never undoes a newer one, and the extractor's answer stays
available for training material (a DPO pair's rejected side). Extraction never rewrites a
document already in the ledger, so no later night overwrites a correction.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

from ..corrections.stream import Correction, CorrectionOutcome
from ..extraction.batch import ConflictingReplay

Query = Callable[..., list[list[Any]]]

#: What corrections add to graphs made before them. Each applied correction is a node of its own,
#: created and never updated: the graph keeps every correction (who, when, what the extractor
#: had said), not only the last.
SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Correction(id STRING PRIMARY KEY, document STRING, "
    "by STRING, at STRING, night STRING, extractor_answer STRING)",
    "CREATE REL TABLE IF NOT EXISTS CORRECTS(FROM Correction TO Document)",
    "ALTER TABLE MENTIONS ADD IF NOT EXISTS confirmed_by STRING DEFAULT ''",
    "ALTER TABLE MENTIONS ADD IF NOT EXISTS confirmed_at STRING DEFAULT ''",
    # SHA-256 of what the correction said (`content_digest`), so that its id sent again with
    # other content is refused; '' for corrections applied before it existed.
    "ALTER TABLE Correction ADD IF NOT EXISTS content STRING DEFAULT ''",
)

DOCUMENT = "MATCH (d:Document {sha256: $sha256}) RETURN d.path, d.stream, d.night"
THIS_ONE = ("MATCH (c:Correction {id: $id}) "
            "RETURN c.night, c.extractor_answer, c.document, c.content")
# The newest correction applied to the document, and the extractor's answer kept by the first.
NEWEST = """
MATCH (c:Correction)-[:CORRECTS]->(d:Document {sha256: $sha256})
RETURN c.at, c.extractor_answer ORDER BY c.at DESC LIMIT 1
"""
MENTIONED = """
MATCH (d:Document {sha256: $sha256})-[m:MENTIONS]->(e:Entity)
RETURN e.key, e.name, e.type, m.mentions
"""
UNCOUNT = """
MATCH (d:Document {sha256: $sha256})-[:MENTIONS]->(e:Entity)
SET e.document_count = e.document_count - 1
"""
UNLINK = "MATCH (d:Document {sha256: $sha256})-[m:MENTIONS]->(:Entity) DELETE m"
# Plain DELETE: an entity still linked would mean a count went wrong; the write fails instead
# of dropping another document's relationships.
DROP_UNNAMED = """
UNWIND $keys AS k
MATCH (e:Entity {key: k}) WHERE e.document_count <= 0
DELETE e
"""
COUNT_IN = """
UNWIND range(1, size($key)) AS i
WITH $key[i] AS key, $name[i] AS name
MATCH (e:Entity {key: key})
SET e.document_count = e.document_count + 1,
    e.spellings = list_distinct(list_concat(e.spellings, [name])),
    e.first_night = CASE WHEN $night < e.first_night THEN $night ELSE e.first_night END,
    e.last_night = CASE WHEN $night > e.last_night THEN $night ELSE e.last_night END
"""
CREATE_ENTITIES = """
UNWIND range(1, size($key)) AS i
CREATE (:Entity {key: $key[i], name: $name[i], type: $type[i], spellings: [$name[i]],
                 first_night: $night, last_night: $night, document_count: 1})
"""
LINK = """
UNWIND range(1, size($key)) AS i
WITH $key[i] AS key, $mentions[i] AS mentions
MATCH (d:Document {sha256: $sha256})
WITH d, key, mentions
MATCH (e:Entity {key: key})
CREATE (d)-[:MENTIONS {mentions: mentions, confirmed_by: $by, confirmed_at: $at}]->(e)
"""
RECORD = """
CREATE (c:Correction {id: $id, document: $sha256, by: $by, at: $at, night: $night,
                      extractor_answer: $answer, content: $content})
WITH c
MATCH (d:Document {sha256: $sha256})
CREATE (c)-[:CORRECTS]->(d)
SET d.entity_count = $count
"""


def apply_correction(query: Query, correction: Correction, night: str,
                     preview: bool = False) -> CorrectionOutcome:
    """Apply `correction` during `night` through `query` (a connection inside a transaction);
    see the module's docstring. Returns what was done; with `preview`, nothing is written and
    an applicable correction comes back `applicable`.

    Raises:
        graph_batch.ConflictingReplay: its id was applied before with another document or
            other content.
    """
    found = query(DOCUMENT, {"sha256": correction.document})
    if not found:
        return CorrectionOutcome(correction.id, correction.document, "waiting")
    path, stream, document_night = found[0]
    outcome = dict(id=correction.id, document=correction.document, path=path, stream=stream)
    this_one = query(THIS_ONE, {"id": correction.id})
    if this_one:
        night_applied, answer, document, content = this_one[0]
        if document != correction.document or content not in ("", content_digest(correction)):
            raise ConflictingReplay(f"correction {correction.id}: applied before with other "
                                    f"content (document {document})")
        return CorrectionOutcome(**outcome, status="already_applied",
                                 applied_night=night_applied, extractor_answer=_pairs(answer))
    newest = query(NEWEST, {"sha256": correction.document})
    if newest and newest[0][0] > correction.at:
        return CorrectionOutcome(**outcome, status="superseded")
    mentioned = {key: (name, type_, int(n)) for key, name, type_, n in
                 query(MENTIONED, {"sha256": correction.document})}
    # The extractor's own answer, before any operator touched the document.
    answer = newest[0][1] if newest else json.dumps(
        [[name, type_] for name, type_, _ in mentioned.values()], ensure_ascii=False)
    if preview:
        return CorrectionOutcome(**outcome, status="applicable", extractor_answer=_pairs(answer))
    query(UNCOUNT, {"sha256": correction.document})
    query(UNLINK, {"sha256": correction.document})
    confirmed = {e.key for e in correction.entities}
    dropped = [key for key in mentioned if key not in confirmed]
    if dropped:
        query(DROP_UNNAMED, {"keys": dropped})
    _link_confirmed(query, correction, document_night,
                    {key: n for key, (_, _, n) in mentioned.items()})
    query(RECORD, {"sha256": correction.document, "id": correction.id, "by": correction.by,
                   "at": correction.at, "night": night, "answer": answer,
                   "count": len(correction.entities), "content": content_digest(correction)})
    return CorrectionOutcome(**outcome, status="applied", applied_night=night,
                             extractor_answer=_pairs(answer))


def _link_confirmed(query: Query, correction: Correction, document_night: str,
                    mentions: dict[str, int]) -> None:
    """Count the confirmed entities in (creating the new ones, on the document's night) and
    link the document to them."""
    keys = [e.key for e in correction.entities]
    if not keys:
        return
    existing = {row[0] for row in query(
        "UNWIND $keys AS k MATCH (e:Entity {key: k}) RETURN e.key", {"keys": keys})}
    known = [e for e in correction.entities if e.key in existing]
    if known:
        query(COUNT_IN, {"key": [e.key for e in known], "name": [e.name for e in known],
                         "night": document_night})
    new = [e for e in correction.entities if e.key not in existing]
    if new:
        query(CREATE_ENTITIES, {"key": [e.key for e in new], "name": [e.name for e in new],
                                "type": [e.type for e in new], "night": document_night})
    query(LINK, {"sha256": correction.document, "key": keys,
                 "mentions": [mentions.get(key, 1) for key in keys],
                 "by": correction.by, "at": correction.at})


def content_digest(correction: Correction) -> str:
    """SHA-256 hex of what `correction` says: its document, entities, who and when."""
    said = correction.model_dump(mode="json", exclude={"id"})
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


def _pairs(answer: str) -> list[tuple[str, str]]:
    return [(name, type_) for name, type_ in json.loads(answer)]

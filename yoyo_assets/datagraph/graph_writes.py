"""The DataGraph's schema and its batched, parameterised writes (LadybugDB Cypher).

Node tables: `Document` (the ledger: one node per processed document hash) and `Entity`;
relationship `MENTIONS` (Document -> Entity, with a mention count). Every statement takes its
values as parameters, never as text pasted into the query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .extraction import DocumentExtraction

SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Document(sha256 STRING PRIMARY KEY, path STRING, "
    "stream STRING, night STRING, entity_count INT64, processed_at TIMESTAMP)",
    "CREATE NODE TABLE IF NOT EXISTS Entity(key STRING PRIMARY KEY, name STRING, type STRING, "
    "aliases STRING[], first_night STRING, last_night STRING, mention_count INT64)",
    "CREATE REL TABLE IF NOT EXISTS MENTIONS(FROM Document TO Entity, count INT64)",
    # Which extractor (model, and adapter version if any) produced the document's entities;
    # added to graphs made before it existed.
    "ALTER TABLE Document ADD IF NOT EXISTS extractor STRING DEFAULT ''",
)

KNOWN_DOCUMENTS = "UNWIND $hashes AS h MATCH (d:Document {sha256: h}) RETURN d.sha256"
KNOWN_ENTITIES = "UNWIND $keys AS k MATCH (e:Entity {key: k}) RETURN e.key"

# The writes scan a DataFrame parameter (`LOAD FROM $rows`): 4-8x the rate of `UNWIND` over a
# list parameter here (docs/benchmarks.md), and still no value is pasted into query text.

# One row per entity key. `mentions` counts the batch's documents that name the entity; nights
# are 'YYYY-MM-DD' strings, so min/max compare as text.
UPSERT_ENTITIES = """
LOAD FROM $rows
MERGE (e:Entity {key: key})
ON CREATE SET e.name = name, e.type = type, e.aliases = aliases,
              e.first_night = night, e.last_night = night, e.mention_count = mentions
ON MATCH SET e.aliases = list_distinct(list_concat(e.aliases, aliases)),
             e.first_night = CASE WHEN night < e.first_night THEN night ELSE e.first_night END,
             e.last_night = CASE WHEN night > e.last_night THEN night ELSE e.last_night END,
             e.mention_count = e.mention_count + mentions
"""

CREATE_DOCUMENTS = """
LOAD FROM $rows
CREATE (:Document {sha256: sha256, path: path, stream: stream, night: night,
                   entity_count: entity_count, extractor: extractor,
                   processed_at: current_timestamp()})
"""

# The documents are new in this transaction, so CREATE cannot duplicate a relationship.
CREATE_MENTIONS = """
LOAD FROM $rows
MATCH (d:Document {sha256: sha256}), (e:Entity {key: key})
CREATE (d)-[:MENTIONS {count: mention_count}]->(e)
"""


@dataclass
class BatchRows:
    """Parameter rows for one transaction: entity upserts (one per key), documents, mentions;
    each list becomes the DataFrame that its statement loads."""

    entities: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    mentions: list[dict[str, Any]]


def batch_rows(extractions: Iterable[DocumentExtraction], night: str) -> BatchRows:
    """Turn documents' extractions into parameter rows, merging entities by key across documents.

    `night` is the partition key ('YYYY-MM-DD') recorded on documents and entities.
    """
    entities: dict[str, dict[str, Any]] = {}
    documents, mentions = [], []
    for extraction in extractions:
        documents.append({"sha256": extraction.sha256, "path": extraction.path,
                          "stream": extraction.stream, "night": night,
                          "entity_count": len(extraction.entities),
                          "extractor": extraction.extractor})
        for entity in extraction.entities:
            row = entities.get(entity.key)
            if row is None:
                entities[entity.key] = {"key": entity.key, "name": entity.name,
                                        "type": entity.type, "aliases": list(entity.aliases),
                                        "night": night, "mentions": 1}
            else:
                row["mentions"] += 1
                row["aliases"].extend(a for a in entity.aliases if a not in row["aliases"])
            mentions.append({"sha256": extraction.sha256, "key": entity.key,
                             "mention_count": entity.mentions})
    return BatchRows(list(entities.values()), documents, mentions)

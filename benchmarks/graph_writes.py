"""Graph write throughput: 10,000 entities per write, with their ledger documents and MENTIONS,
through the pipeline's writer (`GraphDatabase.write_extractions`, one transaction), against one
autocommit MERGE per entity.

    .venv/bin/python benchmarks/graph_writes.py [--entities 10000] [--repeat 5]

Rows (entity upserts/s, the median of `--repeat` writes, each of new documents):
- the writer on new entities (the bulk COPY path) and on entities the graph already holds (the
  UPDATE statement for the entities, COPY for the documents and MENTIONS), each with the batch
  rules of datagraph/extraction/batch.py checked (the embedded sink) and with a batch already
  checked (the graph service, whose request model checks it);
- the writer with bulk COPY switched off (every row through UNWIND: what small writes do);
- naive: one MERGE per entity, autocommit.
A process's first bulk write imports pyarrow's Parquet writer (about a second, once): a warm-up
write on a scratch file comes first. Prints a Markdown table for docs/benchmarks.md.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.graph import store as graph_store  # noqa: E402
from yoyo_assets.datagraph.extraction.extractor import (DocumentExtraction,  # noqa: E402
                                                        ExtractedEntity)
from yoyo_assets.datagraph.graph.store import open_graph  # noqa: E402

NAIVE_UPSERT = """
MERGE (e:Entity {key: $key})
ON CREATE SET e.name = $name, e.type = $type, e.spellings = $spellings,
              e.first_night = $night, e.last_night = $night, e.document_count = $documents
ON MATCH SET e.spellings = list_distinct(list_concat(e.spellings, $spellings)),
             e.first_night = CASE WHEN $night < e.first_night THEN $night ELSE e.first_night END,
             e.last_night = CASE WHEN $night > e.last_night THEN $night ELSE e.last_night END,
             e.document_count = e.document_count + $documents
"""


def extractions(entities: int, documents: int, tag: int, names: int) -> list[DocumentExtraction]:
    """`documents` documents (hashes new for each `tag`) naming `entities` entities in all,
    drawn from name numbers `names`.. (the same `names` gives the same entities)."""
    per = entities // documents
    return [DocumentExtraction(
        f"{tag:032x}{d:032x}", "research", f"doc{tag}-{d}.md",
        [ExtractedEntity(f"person:name {names + d * per + i}", f"Name {names + d * per + i}",
                         "person", [f"Name {names + d * per + i}"], 1) for i in range(per)],
        chunks=1) for d in range(documents)]


def writer_rate(graph, batches, checked: bool) -> float:
    """Median entity upserts/s of writing each batch (its entities counted) in one call."""
    rates = []
    for batch in batches:
        count = sum(len(x.entities) for x in batch)
        started = time.monotonic()
        graph.write_extractions(batch, "2026-11-20", checked=checked)
        rates.append(count / (time.monotonic() - started))
    return statistics.median(rates)


def figures(n: int, repeat: int, folder: Path) -> dict[str, float]:
    with open_graph(folder / "warm-up.lbug") as graph:
        graph.write_extractions(extractions(n, 100, 0, 0), "2026-11-20")
    rows = {}
    with open_graph(folder / "writer.lbug") as graph:
        graph.write_extractions(extractions(n, 100, 10_000, 0), "2026-11-19")  # the known ones
        tag = iter(range(1, 10_000))
        for checked in (False, True):
            new = [extractions(n, 100, next(tag), n * next(tag)) for _ in range(repeat)]
            rows[f"new entities, checked={checked}"] = writer_rate(graph, new, checked)
            known = [extractions(n, 100, next(tag), 0) for _ in range(repeat)]
            rows[f"known entities, checked={checked}"] = writer_rate(graph, known, checked)
    bulk_rows, graph_store.BULK_ROWS = graph_store.BULK_ROWS, 10 ** 12
    try:
        with open_graph(folder / "unwind.lbug") as graph:
            rows["UNWIND only, new entities"] = writer_rate(
                graph, [extractions(n, 100, t, n * t) for t in range(1, repeat + 1)], False)
    finally:
        graph_store.BULK_ROWS = bulk_rows
    with open_graph(folder / "naive.lbug") as graph:
        entities = graph_store.batch_rows(extractions(n, 100, 1, 0), "2026-11-20").entities
        started = time.monotonic()
        for row in zip(*entities.values()):
            graph.query(NAIVE_UPSERT, dict(zip(entities, row)))
        rows["naive"] = n / (time.monotonic() - started)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = figures(args.entities, args.repeat, Path(folder))
    print(f"| write of {args.entities:,} entities, 100 documents, {args.entities:,} MENTIONS "
          "| entity upserts/s |\n|---|---|")
    for name, rate in rows.items():
        print(f"| {name} | {rate:,.0f} |")


if __name__ == "__main__":
    main()

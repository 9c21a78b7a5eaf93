"""One night of entity resolution inside the graph against a large history (issue 46's target:
1,000 new mentions against 1,000,000 existing entities in <= 30 s and <= 2 GiB on 2 cores).

    .venv/bin/python benchmarks/identity_night.py [--history 1000000] [--night 1000]

Builds a LadybugDB file holding `--history` anchored identities (given names and surnames
drawn from pools: ~20 anchors a surname block) with their surname index, loaded with COPY FROM
CSV files written here; writes the night's documents (two person mentions each: a short form
`Sen. <surname>` or a full name of a random anchor, or an unknown person) through
`write_extractions`; then times what `resolved_mentions` does with them: the blocking look-up
of the anchors by surname, the resolver, and the transaction recording the resolutions. Prints
the times and the process's peak RSS.
"""

import argparse
import csv
import hashlib
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.extraction.extractor import (DocumentExtraction,  # noqa: E402
                                                        ExtractedEntity, entity_key)
from yoyo_assets.datagraph.graph.identity import ResolvedMention  # noqa: E402
from yoyo_assets.datagraph.graph.store import open_graph  # noqa: E402
from yoyo_assets.resolution.names import parse_person  # noqa: E402
from yoyo_assets.resolution.resolver import Mention, Resolver  # noqa: E402

NIGHT = "2026-11-20"
#: 1,000 made-up given names of three syllables (distinct enough that Jaro-Winkler rarely
#: joins two: a block's full names mostly name one anchor, its short forms several).
GIVEN = [a + b + c for a in ("ba", "ko", "mi", "ru", "te", "lo", "sa", "vi", "de", "nu")
         for b in ("ran", "lek", "mis", "tov", "dun", "pel", "gar", "sio", "bek", "han")
         for c in ("a", "o", "is", "en", "ul", "ar", "ie", "os", "im", "eth")]


def history_files(folder: Path, history: int, rng: random.Random) -> tuple[list, list]:
    """CSV files of the identities, surname words and links; returns the anchors' (given,
    surname) pairs and the surname words."""
    surnames = [f"surname{n}" for n in range(max(1, history // 20))]
    people = [(rng.choice(GIVEN), rng.choice(surnames)) for _ in range(history)]
    with open(folder / "identity.csv", "w", newline="") as out:
        rows = csv.writer(out)
        for n, (given, surname) in enumerate(people):
            rows.writerow([f"generated:{n}", f"{given} {surname}", "person", "true",
                           f"[{given}]", f"[{surname}]", "senate", "", "[]", NIGHT, NIGHT, 0, ""])
    with open(folder / "surname.csv", "w", newline="") as out:
        csv.writer(out).writerows([s] for s in surnames)
    with open(folder / "surname_of.csv", "w", newline="") as out:
        csv.writer(out).writerows([s, f"generated:{n}"] for n, (_, s) in enumerate(people))
    return people, surnames


def night_documents(people: list, night: int, rng: random.Random) -> list[DocumentExtraction]:
    documents = []
    for d in range(night // 2):
        names = []
        for k in range(2):
            given, surname = rng.choice(people)
            form = (d + k) % 3
            names.append(f"Sen. {surname}" if form == 0 else f"{given} {surname}"
                         if form == 1 else f"Unknown Person{d}-{k}")
        sha = hashlib.sha256(f"night-{d}".encode()).hexdigest()
        documents.append(DocumentExtraction(
            sha, "research", f"/data/research/{d}.md",
            [ExtractedEntity(entity_key(n, "person"), n, "person", [n], 1) for n in names], 1))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--night", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(46)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        started = time.perf_counter()
        people, _ = history_files(folder, args.history, rng)
        with open_graph(folder / "graph.lbug") as graph:
            graph.query(f"COPY Identity FROM '{folder / 'identity.csv'}'")
            graph.query(f"COPY IdentitySurname FROM '{folder / 'surname.csv'}'")
            graph.query(f"COPY SURNAME_OF FROM '{folder / 'surname_of.csv'}'")
            loaded = time.perf_counter() - started
            documents = night_documents(people, args.night, rng)
            graph.write_extractions(documents, NIGHT)
            started = time.perf_counter()
            words = {w for x in documents for e in x.entities
                     for w in parse_person(e.name).surnames}
            anchors = graph.anchors_named(words)
            looked_up = time.perf_counter() - started
            resolver = Resolver(anchors)
            names = {a.id: a.name for a in anchors}
            resolved = [ResolvedMention(x.sha256, r.mention.name, "person", r.entity,
                                        names.get(r.entity, r.mention.name), r.reason)
                        for x in documents for r in resolver.resolve_document(
                            x.sha256, [Mention(x.sha256, e.name) for e in x.entities])]
            decided = time.perf_counter() - started - looked_up
            stats = graph.record_resolutions(resolved, NIGHT)
            total = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {args.history:,} identities and their surname index loaded (COPY) | "
          f"{loaded:.1f} s |\n| blocking look-up of {len(words):,} surname words: "
          f"{len(anchors):,} anchors | {looked_up:.2f} s |\n| {len(resolved):,} mentions "
          f"resolved | {decided:.2f} s |\n| recorded ({stats.resolved} forms, "
          f"{stats.anchored} anchored, {stats.kept_apart} kept apart) | "
          f"{total - looked_up - decided:.2f} s |\n| the night's resolution in all | "
          f"{total:.2f} s |\n| peak RSS of the process | {peak:.0f} MiB |")


if __name__ == "__main__":
    main()

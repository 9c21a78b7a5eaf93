"""Entity resolution end to end: the notes of `resolution/` through the default extractor (the
embedded model on the managed vLLM server, Phase 1's extraction settings), then the resolver
on the person and location entities it found, against the members' contact records.

    .venv/bin/python benchmarks/resolution_end_to_end.py [--limit 100] [--corpora DIR]

Prints the extractor's person-mention precision and recall against the gold (a mention counts
found when the extractor named the gold string in that note), then, on the gold mentions it
found, B-cubed and pairwise scores of today's key, the surname alone and the resolver (the
same scorer as benchmarks/resolution.py), and the seconds spent extracting.
"""

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.documents.streams import read_document  # noqa: E402
from yoyo_assets.datagraph.extraction.extractor import EntityExtractor  # noqa: E402
from yoyo_assets.datagraph.extraction.config import ExtractionConfig  # noqa: E402
from yoyo_assets.resolution.evaluation import load_anchors  # noqa: E402
from yoyo_assets.resolution.names import parse_person  # noqa: E402
from yoyo_assets.resolution.resolver import Mention, Resolver, attach_places  # noqa: E402
from yoyo_assets.resolution.scoring import score_clusters  # noqa: E402
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import (InferenceServer, ServerLaunch,  # noqa: E402
                                                 VllmOptions)


def extract(notes: list[Path]) -> tuple[dict, float]:
    """note name -> [(name, type)] the default extractor answered; and its seconds."""
    model_dir = ensure_embedded_model(REPO / "var" / "data" / "models")
    server = InferenceServer(mode="managed", url="unused", model="extraction",
                             model_dir=str(model_dir), launch=ServerLaunch(
                                 log_dir=tempfile.mkdtemp(), vllm=VllmOptions()))
    with server.serving(logging.getLogger("server")) as running:
        extractor = EntityExtractor(running.base_url, running.request_model,
                                    Tokenizer.from_file(str(model_dir / "tokenizer.json")),
                                    running.context_tokens(),
                                    **ExtractionConfig().extractor_settings(False))
        documents = [read_document(path, "research") for path in notes]
        run = asyncio.run(extractor.extract(documents))
    names = {Path(d.path).name: d.sha256 for d in documents}
    found = {x.sha256: [(e.name, e.type) for e in x.entities] for x in run.results}
    return {note: found.get(sha, []) for note, sha in names.items()}, run.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    labelled = args.corpora / "resolution"
    gold = json.loads((labelled / "gold.json").read_text())
    notes = sorted(gold)[:args.limit]
    extracted, seconds = extract([labelled / n for n in notes])
    resolver = Resolver(load_anchors(args.corpora / "contacts"))
    predicted_persons = found_gold = gold_persons = 0
    names, clusters, entities = [], [], []
    for note in notes:
        text = (labelled / note).read_text()
        persons = [n for n, t in extracted[note] if t == "person"]
        places = [n for n, t in extracted[note] if t == "location"]
        attached = attach_places(text, persons, places)
        resolved = {r.mention.name: r.entity for r in resolver.resolve_document(
            note, [Mention(note, p, attached.get(p, ())) for p in persons], text)}
        wanted = [m for m in gold[note] if m["type"] == "person"]
        predicted_persons += len(persons)
        gold_persons += len(wanted)
        for mention in wanted:
            if mention["name"] in resolved:
                found_gold += 1
                names.append(mention["name"])
                clusters.append(mention["cluster"])
                entities.append(resolved[mention["name"]])
    print(f"{len(notes)} notes, extracted in {seconds:.0f} s: {predicted_persons} person "
          f"mentions answered, {found_gold} of the {gold_persons} gold person mentions found "
          f"(recall {found_gold / gold_persons:.3f}, precision "
          f"{found_gold / max(predicted_persons, 1):.3f})\n")
    print("| clustering of the gold person mentions found | B-cubed P | B-cubed R | "
          "B-cubed F1 | pairwise P | pairwise R |\n|---|---|---|---|---|---|")
    for label, predicted in (
            ("today's key (type + case-folded name)", [" ".join(n.casefold().split())
                                                       for n in names]),
            ("surname only", [parse_person(n).surnames for n in names]),
            ("resolver", entities)):
        s = score_clusters(predicted, clusters)
        print(f"| {label} | {s.bcubed_precision:.3f} | {s.bcubed_recall:.3f} | "
              f"{s.bcubed_f1:.3f} | {s.pairwise_precision:.3f} | {s.pairwise_recall:.3f} |")


if __name__ == "__main__":
    main()

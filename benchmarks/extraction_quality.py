"""Extraction quality benchmark: precision, recall and F1 of extractor variants on labelled sets.

    .venv/bin/python benchmarks/extraction_quality.py [--url URL] [--model NAME] \
        [--adapter NAME=FOLDER] [--set DIR ...] [--limit N] [--variant 'name:key=value,...' ...]
        [--model-dir HF_FOLDER]

Each variant is `EntityExtractor` settings over the defaults of the `extracted_entities` run
config (e.g. `chunk128:max_chunk_tokens=128`, `bytype:answer_format=by_type,few_shot=true`).
Labelled sets default to ../shared/corpora/extraction/dev, research and 48 contact records
(the first by name, scored against gold from their own fields). Without --url it starts the
managed vLLM server with the embedded model; `--adapter` serves a PEFT adapter folder on it as a
LoRA overlay and extracts through it (without the worked example, as Phase 1 does). Prints one markdown row per variant and set:
"any type" precision/recall/F1, F1 of person/company/location/project, recall of company and
location, failed documents and seconds.
"""

import argparse
import logging
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.extraction.config import ExtractionConfig  # noqa: E402
from yoyo_assets.datagraph.extraction.extractor import EntityExtractor  # noqa: E402
from yoyo_assets.datagraph.extraction.quality import (SetNotScored, extract_and_score,  # noqa: E402
                                                      load_labelled_set)
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import (InferenceServer, ServerLaunch,  # noqa: E402
                                                 VllmOptions)

CORPORA = REPO.parent / "shared" / "corpora"


def parse_variant(spec: str) -> tuple[str, dict]:
    name, _, settings = spec.partition(":")
    values = {}
    for pair in filter(None, settings.split(",")):
        key, _, raw = pair.partition("=")
        values[key] = {"true": True, "false": False, "none": None}.get(
            raw.lower(), int(raw) if raw.lstrip("-").isdigit() else
            float(raw) if raw.replace(".", "", 1).isdigit() else raw)
    return name, values


def contacts_set(folder: Path, count: int) -> Path:
    """A labelled set of the first `count` contact records (gold from their fields)."""
    for path in sorted((CORPORA / "contacts").glob("*.json"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="")
    parser.add_argument("--model", default="extraction")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--limit", type=int, default=0, help="documents per set (0: all)")
    parser.add_argument("--contacts", type=int, default=48)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--adapter", default="", help="NAME=FOLDER: extract through this "
                        "LoRA adapter (managed server only)")
    parser.add_argument("--memory-share", type=float, default=None)
    parser.add_argument("--model-dir", default="", help="a Hugging Face model folder to serve "
                        "instead of the embedded model (its tokenizer cuts the chunks)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    with ExitStack() as stack:
        sets = [Path(s) for s in args.set] or [
            CORPORA / "extraction" / "dev", CORPORA / "research",
            contacts_set(Path(stack.enter_context(tempfile.TemporaryDirectory())),
                         args.contacts)]
        model_dir = (Path(args.model_dir) if args.model_dir
                     else ensure_embedded_model(REPO / "var" / "data" / "models"))
        adapter, _, folder = args.adapter.partition("=")
        server = InferenceServer(mode="external" if args.url else "managed",
                                 url=args.url or "unused", model=args.model,
                                 model_dir=str(model_dir),
                                 lora_modules={adapter: folder} if adapter else {},
                                 adapter=adapter, launch=ServerLaunch(
                                     log_dir=tempfile.mkdtemp(),
                                     vllm=VllmOptions(memory_share=args.memory_share)))
        running = stack.enter_context(server.serving(logging.getLogger("server")))
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        print("| variant | set | P | R | F1 | person F1 | company F1 | location F1 | "
              "project F1 | company R | location R | failed | s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for spec in args.variant or ["default:"]:
            name, overrides = parse_variant(spec)
            settings = {**ExtractionConfig().extractor_settings(bool(adapter)), **overrides}
            extractor = EntityExtractor(running.base_url, running.request_model, tokenizer,
                                        running.context_tokens(), **settings)
            for folder in sets:
                labelled = load_labelled_set(folder)[:args.limit or None]
                try:
                    report, quality = extract_and_score(extractor, labelled)
                except SetNotScored as exc:
                    sys.exit(f"{folder.name}: {exc}")
                m, s = quality.metrics(), quality.scores
                print(f"| {name} | {folder.name} ({len(labelled)}) | {m['any_precision']:.3f} | "
                      f"{m['any_recall']:.3f} | **{m['any_f1']:.3f}** | {m['person_f1']:.3f} | "
                      f"{m['company_f1']:.3f} | {m['location_f1']:.3f} | {m['project_f1']:.3f} | "
                      f"{s['company'].recall:.3f} | {s['location'].recall:.3f} | "
                      f"{len(report.failures)} | {report.seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()

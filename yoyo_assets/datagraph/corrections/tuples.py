"""SFT tuples that teach the extractor: the extraction prompt for one chunk of a labelled
document -> the JSON answer the schema allows, listing the chunk's gold entities.

These fill the `extraction-<tenant>` corpus bucket: from labelled documents, and from operators'
corrections (`correction_material`, which also gives DPO pairs): one JSON object per line,
`{"messages": [system, user, assistant]}`, the assistant's content an answer in the `items`
format. The chunks are cut exactly as the extractor cuts them at serving time, so the adapter
learns on what it will see.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .stream import Correction, CorrectionOutcome
from ..documents.streams import DocumentError, read_document
from ..extraction.extractor import (ENTITY_TYPES, Tokenizer, build_messages, normalise_name,
                                    split_into_chunks)
from ..extraction.quality import GoldEntity, LabelledDocument


#: Named chunks per empty chunk kept in the tuples.
EMPTY_SHARE = 4


def chunk_answer(chunk: str, gold: list) -> dict:
    """The `items` answer for one chunk: the gold entities of a scored type whose name occurs in
    the chunk as whole words (case-insensitively: `ART` is not in "martyrs"), in order of first
    occurrence, each once."""
    found = []
    seen = set()
    for entity in gold:
        key = normalise_name(entity.name).casefold()
        if entity.type not in ENTITY_TYPES or key in seen:
            continue
        match = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", chunk, re.IGNORECASE)
        if match:
            seen.add(key)
            found.append((match.start(), entity.name, entity.type))
    return {"entities": [{"name": name, "type": type_} for _, name, type_ in sorted(found)]}


def answer_text(answer: dict, answer_format: str) -> str:
    """A `chunk_answer` as the JSON text of an answer in `answer_format` (extraction's
    ANSWER_FORMATS)."""
    if answer_format == "by_type":
        answer = {t: [e["name"] for e in answer["entities"] if e["type"] == t]
                  for t in ENTITY_TYPES}
    return json.dumps(answer, ensure_ascii=False)


def extraction_tuples(labelled: list[LabelledDocument], tokenizer: Tokenizer,
                      chunk_tokens: int, answer_format: str = "items",
                      few_shot: bool = False) -> list[dict]:
    """SFT tuples from the chunks of each labelled document, cut at most `chunk_tokens` tokens
    long and prompted as the extractor prompts them (its `chunk_tokens`, `answer_format`,
    `few_shot`). Every chunk that names a gold entity gives a tuple; chunks that name none (the
    model must learn to answer an empty list) give one per EMPTY_SHARE named ones, the first in
    document order. With one empty chunk per named one, an adapter trained on 32-token chunks of
    WNUT-17 notes learned to answer nothing at all (F1 0.00: docs/benchmarks.md)."""
    named, empty = [], []
    for item in labelled:
        chunks = split_into_chunks(item.document.text, tokenizer, chunk_tokens)
        for part, chunk in enumerate(chunks, 1):
            messages = build_messages(item.document.stream, chunk, part, len(chunks),
                                      answer_format, few_shot)
            answer = chunk_answer(chunk, item.gold)
            content = answer_text(answer, answer_format)
            (named if answer["entities"] else empty).append(
                {"messages": [*messages, {"role": "assistant", "content": content}]})
    return named + empty[:len(named) // EMPTY_SHARE]


def write_tuples(tuples: list[dict], path: Path) -> int:
    """Write `tuples` as JSONL to `path` (a new file; parents created). Returns the count.

    Raises:
        FileExistsError: `path` exists (bucket files are added, never rewritten).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as out:
        for record in tuples:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(tuples)


@dataclass
class CorrectionMaterial:
    """Training material from applied corrections: extraction SFT tuples (`sft`), DPO pairs
    where the extractor's answer for a chunk differs from the confirmed one (`dpo`), and the
    corrections skipped, with why (`skipped`: correction id -> reason)."""

    sft: list[dict] = field(default_factory=list)
    dpo: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def correction_material(applied: list[tuple[CorrectionOutcome, Correction]],
                        tokenizer: Tokenizer, chunk_tokens: int,
                        answer_format: str = "items") -> CorrectionMaterial:
    """SFT tuples and DPO pairs from applied corrections (outcome and correction; no pairs
    where the extractor's answer is not known; a pair whose confirmed answer is empty, one per
    EMPTY_SHARE pairs that name an entity, the first in order), each
    document read again from its ledger path and cut as an extraction adapter's prompts cut it
    (`chunk_tokens`, `answer_format`, no worked example). Every record names its correction
    (`source`: `correction:<id>`). A document whose file is gone or changed is skipped."""
    material, named, empty = CorrectionMaterial(), [], []
    for outcome, correction in applied:
        try:
            document = read_document(Path(outcome.path), outcome.stream)
        except (DocumentError, OSError) as exc:
            material.skipped[correction.id] = f"{outcome.path}: {exc}"
            continue
        if document.sha256 != correction.document:
            material.skipped[correction.id] = f"{outcome.path}: changed since it was extracted"
            continue
        source = f"correction:{correction.id}"
        confirmed = [GoldEntity(e.name, e.type) for e in correction.entities]
        labelled = [LabelledDocument(document, confirmed)]
        material.sft += [{**t, "source": source} for t in extraction_tuples(
            labelled, tokenizer, chunk_tokens, answer_format)]
        if outcome.extractor_answer is None:  # corrected before it was extracted: no pairs
            continue
        answered = [GoldEntity(name, type_) for name, type_ in outcome.extractor_answer]
        chunks = split_into_chunks(document.text, tokenizer, chunk_tokens)
        for part, chunk in enumerate(chunks, 1):
            chosen, rejected = chunk_answer(chunk, confirmed), chunk_answer(chunk, answered)
            if chosen != rejected:
                (named if chosen["entities"] else empty).append({
                    "prompt": build_messages(document.stream, chunk, part, len(chunks),
                                             answer_format),
                    "chosen": answer_text(chosen, answer_format),
                    "rejected": answer_text(rejected, answer_format), "source": source})
    # As with the SFT tuples: pairs whose confirmed answer is empty (the extractor named what
    # is no entity) outnumber the rest, and a DPO pass over them all taught the extractor to
    # answer nothing at all (F1 0.000, docs/benchmarks.md).
    material.dpo = named + empty[:len(named) // EMPTY_SHARE]
    return material

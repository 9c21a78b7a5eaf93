"""SFT tuples that teach the extractor: the extraction prompt for one chunk of a labelled
document -> the JSON answer the schema allows, listing the chunk's gold entities.

These fill the `extraction-<tenant>` corpus bucket. Producers in production write the same
format from curated corrections (docs/extraction-adapter.md): one JSON object per line,
`{"messages": [system, user, assistant]}`, the assistant's content an answer in the `items`
format. The chunks are cut exactly as the extractor cuts them at serving time, so the adapter
learns on what it will see.
"""

from __future__ import annotations

import json
from pathlib import Path

from .extraction import ENTITY_TYPES, Tokenizer, build_messages, normalise_name, split_into_chunks
from .quality import LabelledDocument


def chunk_answer(chunk: str, gold: list) -> dict:
    """The `items` answer for one chunk: the gold entities of a scored type whose name occurs in
    the chunk (case-insensitively), in order of first occurrence, each once."""
    haystack = chunk.casefold()
    found = []
    seen = set()
    for entity in gold:
        key = normalise_name(entity.name).casefold()
        if entity.type not in ENTITY_TYPES or key in seen:
            continue
        position = haystack.find(key)
        if position >= 0:
            seen.add(key)
            found.append((position, entity.name, entity.type))
    return {"entities": [{"name": name, "type": type_} for _, name, type_ in sorted(found)]}


def extraction_tuples(labelled: list[LabelledDocument], tokenizer: Tokenizer,
                      chunk_tokens: int) -> list[dict]:
    """One SFT tuple per chunk of each labelled document, chunks of at most `chunk_tokens`
    tokens (the extractor's `chunk_tokens`). Chunks without a gold entity are kept: they teach
    the model to answer an empty list."""
    tuples = []
    for item in labelled:
        chunks = split_into_chunks(item.document.text, tokenizer, chunk_tokens)
        for part, chunk in enumerate(chunks, 1):
            messages = build_messages(item.document.stream, chunk, part, len(chunks))
            answer = json.dumps(chunk_answer(chunk, item.gold), ensure_ascii=False)
            tuples.append({"messages": [*messages, {"role": "assistant", "content": answer}]})
    return tuples


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

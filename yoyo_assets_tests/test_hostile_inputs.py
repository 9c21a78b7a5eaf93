"""No file can stop a step: every stream a night reads (documents, operators' corrections,
corpus tuples) holding special files, links out of the data root, deep nesting, huge numbers and
random bytes. Each bad file or line is reported once with its reason, every good one is used,
no step raises or hangs, and nothing outside the data root (nor any FIFO) is opened, by an audit
hook of this process. Then one night through Dagster over such a root (docs/reliability.md)."""

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from dagster import DagsterInstance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yoyo_assets.adapters.corpus import scan_bucket
from yoyo_assets.datagraph.corrections.stream import read_corrections
from yoyo_assets.datagraph.documents.streams import scan_streams
from yoyo_assets.definitions import build_definitions
from yoyo_assets.shared.text import unsafe_character

from .helpers import DEMO, NIGHT, WHOLE_DOCUMENTS, arrived_during, metadata, timeout
from .hostile import AUDIT, FILE_KINDS, JSON_KINDS, place, write

NIGHT_END = arrived_during(NIGHT) + 86_400
GOOD_NOTE = "title: Kestrel\nsummary: Ana Silva leads Kestrel in Lisbon.\n"
GOOD_SFT = {"prompt": "Summarise: fix typo in README", "completion": "Fix README typo"}
#: folder of each stream under the data root -> the suffix its files take.
DOCUMENT_SUFFIX = {"transcripts": ".md", "research": ".yaml", "contacts": ".json"}


def correction_line(**record) -> str:
    return json.dumps({"entities": [{"name": "Ana Silva", "type": "person"}], "by": "ana",
                       "at": "2026-11-20T10:00Z", **record})


def hostile_root(root: Path, outside: Path) -> dict:
    """Every hostile kind in every stream, beside good files; returns what each step must
    report: {"documents": {path: reason}, "corrections": {(path, line): reason},
    "corpus": {(path, line): reason}} and the good files."""
    expected = {"documents": {}, "corrections": {}, "corpus": {}}
    for stream, suffix in DOCUMENT_SUFFIX.items():
        for kind, reason in FILE_KINDS.items():
            path = place(kind, root / stream, f"{kind}{suffix}", outside)
            expected["documents"][str(path)] = reason
    for kind, (text, reason) in JSON_KINDS.items():
        expected["documents"][str(write(root / "contacts" / f"{kind}.json", text))] = reason
    named = write(root / "transcripts" / "evil\n\x1b[31mname.md", "**Ana**: hi\n")
    expected["documents"][str(named)] = "file name holds a control character"
    good = write(root / "research" / "good.yaml", GOOD_NOTE)
    write(root / "research" / "big.md", "**Ana**: " + "la " * 4000)  # over the 8 KiB cap below
    expected["documents"][str(root / "research" / "big.md")] = "oversized"

    for kind, reason in FILE_KINDS.items():
        path = place(kind, root / "corrections", f"{kind}.jsonl", outside)
        expected["corrections"][(str(path), 0)] = reason
        expected["corpus"][(str(place(kind, root / "corpus" / "engineering-pointsav",
                                      f"{kind}.jsonl", outside)), 0)] = reason
    place("fifo", root / "research", "fifo-target.txt", outside)
    lines = [
        (correction_line(document=hashlib.sha256(GOOD_NOTE.encode()).hexdigest()), None),
        (JSON_KINDS["deep"][0], "nested deeper than"),
        (JSON_KINDS["big_number"][0], "a number too large"),
        (correction_line(path="research/fifo-target.txt"), "a FIFO, not a regular file"),
        (correction_line(path="research/big.md"), "oversized"),
        (correction_line(path="research/outside.yaml"), "outside the data root"),
    ]
    corrections = write(root / "corrections" / "review.jsonl",
                        "".join(text + "\n" for text, _ in lines))
    expected["corrections"].update({(str(corrections), n): reason
                                    for n, (_, reason) in enumerate(lines, 1) if reason})
    tuples = [(json.dumps(GOOD_SFT), None), (JSON_KINDS["deep"][0], "nested deeper than"),
              (JSON_KINDS["big_number"][0], "a number too large")]
    bucket = write(root / "corpus" / "engineering-pointsav" / "tuples.jsonl",
                   "".join(text + "\n" for text, _ in tuples))
    expected["corpus"].update({(str(bucket), n): reason
                               for n, (_, reason) in enumerate(tuples, 1) if reason})
    return {**expected, "good_documents": [str(good)]}


def shown(path: str) -> str:
    """A path as a log line must show it: its newline and escape character escaped."""
    return path.replace("\n", "\\x0a").replace("\x1b", "\\x1b")


def run_steps(root: Path) -> tuple:
    """The three steps' domain functions over `root`, in a thread that must end within 60 s
    (a FIFO's open would block it for ever)."""
    results = {}

    def steps():
        results["documents"] = scan_streams(root, NIGHT_END, max_bytes=8192)
        results["corrections"] = read_corrections(root, NIGHT_END, max_document_bytes=8192)
        results["corpus"] = scan_bucket(root / "corpus" / "engineering-pointsav", "sft",
                                        NIGHT_END)

    with AUDIT.recording():
        worker = threading.Thread(target=steps, daemon=True)
        worker.start()
        worker.join(timeout(60))
    assert not worker.is_alive(), "a step hung"
    return results["documents"], results["corrections"], results["corpus"]


def test_every_hostile_file_is_rejected_once_by_name_and_nothing_outside_is_opened(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    expected = hostile_root(root, outside)
    documents, corrections, corpus = run_steps(root)

    rejected = {}
    for rejection in documents.rejected:
        assert rejection.path not in rejected, f"reported twice: {rejection}"
        assert unsafe_character(str(rejection)) is None, repr(str(rejection))
        rejected[rejection.path] = rejection.reason
    assert set(rejected) == {shown(path) for path in expected["documents"]}, rejected
    for path, reason in expected["documents"].items():
        assert reason in rejected[shown(path)], (path, rejected[shown(path)])
    assert [d.path for d in documents.documents] == expected["good_documents"]

    got = {(line.path, line.line): line.reason for line in corrections.rejected}
    assert set(got) == set(expected["corrections"]), got
    for where, reason in expected["corrections"].items():
        assert reason in got[where], (where, got[where])
    assert len(corrections.corrections) == 1

    got = {(line.path, line.line): line.reason for line in corpus.invalid}
    assert set(got) == set(expected["corpus"]), got
    for where, reason in expected["corpus"].items():
        assert reason in got[where], (where, got[where])
    assert [t.record for t in corpus.tuples] == [GOOD_SFT]

    assert AUDIT.breaches(outside) == []


#: step -> the file each kind is placed as under the data root.
STEP_FILES = {"documents": "contacts/{}.json", "corrections": "corrections/{}.jsonl",
              "corpus": "corpus/engineering-pointsav/{}.jsonl"}


def _reported(step: str, results: tuple) -> dict[str, str]:
    """path -> reason of what `step` turned away (files, or lines as `path:line`)."""
    documents, corrections, corpus = results
    if step == "documents":
        return {r.path: r.reason for r in documents.rejected}
    lines = corrections.rejected if step == "corrections" else corpus.invalid
    return {f"{line.path}:{line.line}" if line.line else line.path: line.reason
            for line in lines}


@pytest.mark.parametrize("kind", [*FILE_KINDS, *JSON_KINDS])
@pytest.mark.parametrize("step", STEP_FILES)
def test_one_hostile_file_is_one_rejection_naming_it(step, kind, tmp_path):
    """Each finding of issue 47 alone, in each step: the step ends, names the file (and line)
    with the reason, and still reads the good file beside it."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    relative = STEP_FILES[step].format(kind)
    if kind in FILE_KINDS:
        path, where, reason = place(kind, (root / relative).parent, Path(relative).name,
                                    outside), None, FILE_KINDS[kind]
        where = str(path)
    else:
        text, reason = JSON_KINDS[kind]
        path = write(root / relative, text.replace("\n", " ") + "\n")
        where = str(path) if step == "documents" else f"{path}:1"
    write(root / "research" / "good.yaml", GOOD_NOTE)
    write(root / "corpus" / "engineering-pointsav" / "good.jsonl", json.dumps(GOOD_SFT) + "\n")
    results = run_steps(root)
    reported = _reported(step, results)
    assert list(reported) == [where] and reason in reported[where], reported
    assert [d.path for d in results[0].documents] == [str(root / "research" / "good.yaml")]
    assert [t.record for t in results[2].tuples] == [GOOD_SFT]
    assert AUDIT.breaches(outside) == []


def _json_values():
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=20)


CONTENT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    _json_values().map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda d: (b"[" * d + b"]" * d)),
    st.integers(min_value=4000, max_value=6000).map(lambda d: b'{"n": ' + b"7" * d + b"}"),
)
SPECIAL = st.sampled_from(sorted(FILE_KINDS))
FOLDERS = st.sampled_from(["transcripts/{}.md", "research/{}.yaml", "research/{}.md",
                           "contacts/{}.json", "corrections/{}.jsonl",
                           "corpus/engineering-pointsav/{}.jsonl"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.tuples(FOLDERS, st.one_of(SPECIAL, CONTENT)), min_size=1, max_size=12))
def test_hostile_data_roots_never_stop_a_step(files, tmp_path_factory):
    """Any mix of special files and arbitrary bytes across the streams: each step ends (no
    exception, no hang); every document file is either read or rejected once, every
    corrections or tuples line either used or rejected; nothing outside the root opened."""
    base = tmp_path_factory.mktemp("root")
    root, outside = base / "data", base / "outside"
    placed = []
    for number, (pattern, content) in enumerate(files):
        relative = pattern.format(f"f{number}")
        if isinstance(content, str):
            placed.append(place(content, root / Path(relative).parent, Path(relative).name,
                                outside))
        else:
            placed.append(write(root / relative, content))
    documents, corrections, corpus = run_steps(root)

    document_files = {str(p) for p in placed if p.parts[-2] in DOCUMENT_SUFFIX}
    rejected = [r.path for r in documents.rejected]
    assert len(rejected) == len(set(rejected))
    read = {d.path for d in documents.documents} | set(documents.duplicates)
    assert read | set(rejected) == document_files and not read & set(rejected)
    for scan, folder in ((corrections.rejected, "corrections"), (corpus.invalid, "corpus")):
        wholes = [line.path for line in scan if line.line == 0]
        assert len(wholes) == len(set(wholes))
        assert all(Path(path).is_relative_to(root / folder) for path in wholes)
    assert AUDIT.breaches(outside) == []


def test_a_night_over_a_hostile_root_completes_reports_each_file_and_extracts_the_good(
        external_server, dagster_home, tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    expected = hostile_root(root, outside)
    os.remove(root / "research" / "big.md")  # the night runs with the default size cap
    del expected["documents"][str(root / "research" / "big.md")]
    good = [write(root / "contacts" / p.name, p.read_bytes())
            for p in sorted((DEMO / "contacts").glob("*.json"))[:2]]
    defs = build_definitions(root, external_server)
    result = defs.resolve_job_def("datagraph_nightly").execute_in_process(
        partition_key=NIGHT, instance=DagsterInstance.get(),
        run_config={"ops": {"extracted_entities": {"config": WHOLE_DOCUMENTS}}})
    assert result.success
    found = metadata(result, "documents")
    reported = {r["file"]: r["reason"] for r in found["rejections"]}
    assert found["rejected"] == len(expected["documents"]) == len(reported)
    assert found["documents"] == 1 + len(good)
    extracted = metadata(result, "extracted_entities")
    assert extracted["documents_ok"] == 1 + len(good), extracted["failures"]
    assert metadata(result, "datagraph")["night_documents"] == 1 + len(good)
    corrections = metadata(result, "corrections")
    assert corrections["rejected"] == len(expected["corrections"]), corrections

"""The bad-input catalogue through Dagster: one night holding every kind of bad document and bad
tuple beside good ones. Each bad one is in the run's metadata with its file, line and reason; every
good one goes on. (Bad model answers: test_extraction; docs/reliability.md lists them all.)"""

import json
import os

from dagster import AssetKey, DagsterInstance

from yoyo_assets.definitions import build_definitions

from .test_documents import BILLION_LAUGHS
from .helpers import NIGHT, arrived_during

#: file under the data root -> (bytes, reason substring, line or None)
BAD_DOCUMENTS = {
    "transcripts/latin1.md": (b"# Sync\n\n**Ana**: caf\xe9\n", "not UTF-8", 3),
    "transcripts/binary.md": (b"**Ana**: hi\n\x00\x01\x02\x03", "binary content", 2),
    "transcripts/empty.md": (b"", "empty document", None),
    "transcripts/no-turns.md": (b"# Sync\n\nWe met and agreed.\n", "no speaker turns", None),
    "transcripts/huge.md": (b"**Ana**: " + b"la " * 800_000, "oversized", None),
    "contacts/truncated.json": (b'{\n  "name": "Ada Lo', "malformed JSON", 2),
    "contacts/list.json": (b'["Ada"]', "expected a JSON object", 1),
    "research/tagged.yaml": (b"title: !!python/object/apply:os.system ['true']\n",
                             "malformed YAML", 1),
    "research/laughs.yaml": (BILLION_LAUGHS, "YAML alias expansion", 4),
}
GOOD_DOCUMENTS = {
    "transcripts/sync.md": b"# Sync\n\n**Ana Silva**: Kestrel ships on Friday.\n",
    "contacts/ada.json": b'{"name": "Ada Lovelace", "company": "Analytical Engines"}',
    "research/note.yaml": b"title: Kestrel\nsummary: Ana Silva leads Kestrel in Lisbon.\n",
}

GOOD_SFT = {"prompt": "Summarise: fix typo in README", "completion": "Fix README typo"}
GOOD_DPO = {"prompt": "Is the build green?", "chosen": "Yes, all 80 tests pass.",
            "rejected": "Maybe."}
#: bucket -> lines (bad ones with the reason substring expected for them; None for good lines)
BAD_TUPLES = {
    "engineering-pointsav": [
        (json.dumps(GOOD_SFT), None),
        ('{"prompt": "Summarise: x", "completion": "Fix', "not JSON"),
        (json.dumps({"prompt": "Summarise: y"}), "is not valid under any of the given schemas"),
        (json.dumps({"prompt": "Summarise: z", "completion": 7}), "schema violation"),
        (json.dumps({"prompt": "Summarise: w", "completion": "x" * 70_000}), "over-long tuple"),
        (json.dumps(GOOD_SFT), None),  # a duplicate: dropped, counted
        (b"\xff\xfe not text".decode("latin-1"), "not JSON"),
    ],
    "apprenticeship-pointsav": [
        (json.dumps(GOOD_DPO), None),
        (json.dumps({**GOOD_DPO, "chosen": ""}), "schema violation at chosen"),
        (json.dumps({"prompt": "Is it?", "chosen": "Yes."}), "'rejected' is a required property"),
        (json.dumps({**GOOD_DPO, "rejected": ["no"]}), "schema violation at rejected"),
        (json.dumps(["a", "list"]), "not an object"),
    ],
}


def write(root, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (arrived_during(NIGHT),) * 2)


def test_every_bad_document_kind_is_in_the_run_metadata_and_the_rest_go_on(dagster_home,
                                                                           tmp_path):
    root = tmp_path / "data"
    for relative, (data, _, _) in BAD_DOCUMENTS.items():
        write(root, relative, data)
    for relative, data in GOOD_DOCUMENTS.items():
        write(root, relative, data)
    result = build_definitions(root).resolve_job_def("datagraph_nightly").execute_in_process(
        partition_key=NIGHT, instance=DagsterInstance.get(),
        asset_selection=[AssetKey("documents")])
    assert result.success
    meta = result.asset_materializations_for_node("documents")[0].metadata
    rejections = {r["file"]: r for r in meta["rejections"].value}
    assert meta["rejected"].value == len(BAD_DOCUMENTS)
    for relative, (_, reason, line) in BAD_DOCUMENTS.items():
        rejection = rejections[str(root / relative)]
        assert reason in rejection["reason"] and rejection["line"] == line, rejection
    assert meta["documents"].value == len(GOOD_DOCUMENTS)
    # The good documents, and only they, go on to extraction.
    passed_on = result.output_for_node("documents")
    assert sorted(d.path for d in passed_on) == sorted(str(root / r) for r in GOOD_DOCUMENTS)


def test_every_bad_tuple_kind_is_in_the_run_metadata_and_the_rest_are_kept(dagster_home,
                                                                          tmp_path):
    root = tmp_path / "data"
    for bucket, lines in BAD_TUPLES.items():
        write(root, f"corpus/{bucket}/tuples.jsonl",
              "".join(line + "\n" for line, _ in lines).encode())
    result = build_definitions(root).resolve_job_def("corpus_nightly").execute_in_process(
        partition_key=NIGHT, instance=DagsterInstance.get())
    assert result.success
    for bucket, lines in BAD_TUPLES.items():
        role, tenant = bucket.split("-", 1)
        meta = result.asset_materializations_for_node(f"{tenant}__{role}__corpus_bucket")[0] \
            .metadata
        invalid = {i["line"]: i for i in meta["invalid"].value}
        expected = {n: reason for n, (_, reason) in enumerate(lines, 1) if reason}
        assert set(invalid) == set(expected), invalid
        for line, reason in expected.items():
            assert reason in invalid[line]["reason"], (line, invalid[line])
            assert invalid[line]["file"] == str(root / "corpus" / bucket / "tuples.jsonl")
        good = sum(1 for _, reason in lines if reason is None)
        duplicates = meta["duplicates_dropped"].value
        assert meta["tuple_count"].value == good - duplicates
        assert duplicates == (1 if bucket.startswith("engineering") else 0)

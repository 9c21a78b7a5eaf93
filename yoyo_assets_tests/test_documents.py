"""Reading documents: every kind of bad file is rejected with file, line and reason, and the
real corpora read cleanly."""

import os
import time
from pathlib import Path

import pytest

from yoyo_assets.datagraph.documents.streams import DocumentError, read_document, scan_streams


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


#: Each level holds ten aliases of the one before: 10^6 nodes once expanded.
BILLION_LAUGHS = b"l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" + b"".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n".encode() for i in range(1, 7))


@pytest.mark.parametrize("name, data, reason, line", [
    ("a.md", b"# note\n\ncaf\xe9 au lait\n", "not UTF-8", 3),
    ("b.md", b"# note\nok\n\x00\x01\x02binary", "binary content", 3),
    ("c.md", b"", "empty document", None),
    ("d.md", b"  \n\n\t\n", "empty document", None),
    ("e.json", b'{\n  "name": "Ada",\n  "city": \n}\n', "malformed JSON", 4),
    ("f.json", b'{"name": "Ada", "city": "Lon', "malformed JSON", 1),
    ("g.json", b'["a list", "not a record"]', "expected a JSON object", 1),
    ("h.yaml", b"title: x\nauthors:\n  - a\n - b\n", "malformed YAML", 4),
    ("i.yaml", b"title: !!python/object/apply:os.system ['echo hi']\n", "malformed YAML", 1),
    ("j.yaml", BILLION_LAUGHS, "YAML alias expansion over 10000 nodes", 4),
    ("k.yaml", b"title: x\nloop: &a [1, *a]\n", "YAML alias refers to itself", 2),
])
def test_bad_documents_are_rejected_with_file_line_and_reason(tmp_path, name, data, reason, line):
    path = write(tmp_path / name, data)
    with pytest.raises(DocumentError) as caught:
        read_document(path, "research")
    rejection = caught.value.rejection
    assert rejection.path == str(path)
    assert reason in rejection.reason
    assert rejection.line == line
    assert str(path) in str(caught.value)


def test_yaml_tags_build_no_objects_and_run_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path / "evil.yaml",
                 f"x: !!python/object/apply:os.system ['touch {marker}']\n".encode())
    with pytest.raises(DocumentError, match="could not determine a constructor"):
        read_document(path, "research")
    assert not marker.exists()


def test_transcript_without_speaker_turns_is_rejected(tmp_path):
    path = write(tmp_path / "notes.md", b"# Meeting\n\nWe went over the plan.\nNo names.\n")
    with pytest.raises(DocumentError, match="transcript has no speaker turns"):
        read_document(path, "transcripts")
    assert read_document(path, "research").text.startswith("# Meeting")  # fine as a note
    turns = write(tmp_path / "turns.md", b"# Stand-up\n\nAda Lovelace: The build is green.\n")
    assert read_document(turns, "transcripts").stream == "transcripts"


def test_oversized_document_is_rejected_before_reading(tmp_path):
    path = write(tmp_path / "big.md", b"x" * 2048)
    with pytest.raises(DocumentError, match="oversized: 2048 bytes, limit 1024"):
        read_document(path, "transcripts", max_bytes=1024)


def test_unreadable_document_is_rejected(tmp_path):
    # Tests run as root, which reads mode-000 files; a folder named like a document cannot be read.
    path = tmp_path / "folder.md"
    path.mkdir()
    with pytest.raises(DocumentError, match="a folder, not a regular file"):
        read_document(path, "transcripts")


def test_json_record_is_read_one_field_a_line_and_identity_is_sha256_of_bytes(tmp_path):
    import hashlib
    data = b'{\n  "name": "Ada Lovelace",\n  "city": "London"\n}\n'
    document = read_document(write(tmp_path / "ada.json", data), "contacts")
    assert document.text == "name: Ada Lovelace\ncity: London\n"
    assert document.sha256 == hashlib.sha256(data).hexdigest()
    assert document.size_bytes == len(data)


def test_scan_keeps_arrival_order_skips_late_and_duplicate_files(tmp_path):
    now = time.time()
    early = write(tmp_path / "research" / "a.md", b"# A\nAlice met Bob.\n")
    same = write(tmp_path / "research" / "b.md", b"# A\nAlice met Bob.\n")
    late = write(tmp_path / "transcripts" / "c.md", b"# C\n**Carol**: hi\n")
    bad = write(tmp_path / "contacts" / "d.json", b"{oops")
    for path in (early, same, bad):
        os.utime(path, (now - 3600, now - 3600))
    os.utime(late, (now + 3600, now + 3600))
    scan = scan_streams(tmp_path, arrived_by=now)
    assert [d.path for d in scan.documents] == [str(early)]
    assert scan.duplicates == [str(same)]
    assert [r.path for r in scan.rejected] == [str(bad)]
    assert scan.rejected[0].line == 1


def test_real_corpora_read_cleanly(corpora):
    scan = scan_streams(corpora, arrived_by=time.time() + 1)
    assert scan.rejected == []
    streams = {d.stream for d in scan.documents}
    assert streams == {"transcripts", "research", "contacts"}
    assert len(scan.documents) == 30 + 48 + 403


def test_a_file_name_that_is_not_utf8_is_rejected_and_the_rest_read(tmp_path):
    """A non-UTF-8 file name reaches Python as lone surrogates, which the graph refuses (and
    which crashed LadybugDB): the file is rejected, named printably, and nothing else lost."""
    bad = Path(os.fsdecode(str(tmp_path).encode() + b"/research/caf\xe9.md"))
    write(bad, b"# A note about Ada Lovelace\n")
    write(tmp_path / "research" / "good.md", b"# A note about Charles Babbage\n")
    scan = scan_streams(tmp_path, time.time() + 60)
    assert [Path(d.path).name for d in scan.documents] == ["good.md"]
    [rejection] = scan.rejected
    assert "lone surrogate U+DCE9" in rejection.reason and "rename the file" in rejection.reason
    assert rejection.path.endswith("research/caf\\udce9.md")
    str(rejection).encode("utf-8")  # printable: no lone surrogate left in the message

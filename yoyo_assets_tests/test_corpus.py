"""Corpus buckets: the real SFT and DPO corpora validate; every kind of bad line is reported
with file and line and skipped; duplicates are dropped; pending excludes trained tuples."""

import json
import os
import time

import pytest

from yoyo_assets.adapters.corpus import bucket_name, canonical_hash, scan_bucket, tuple_kind


def test_real_corpora_are_valid_tuples(corpora):
    now = time.time() + 1
    sft = scan_bucket(corpora / "engineering", "sft", now)
    dpo = scan_bucket(corpora / "apprenticeship", "dpo", now)
    assert sft.invalid == [] and dpo.invalid == []
    assert len(sft.tuples) + sft.duplicates == 300
    assert len(dpo.tuples) + dpo.duplicates == 450
    assert all(t.line >= 1 and t.path.endswith(".jsonl") for t in sft.tuples + dpo.tuples)


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_kept(tmp_path):
    good = {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"prompt": "Hi?", "chosen": "Hello!"}),
        json.dumps({**good, "chosen": ""}),
        json.dumps({**good, "rejected": 42}),
        json.dumps({**good, "prompt": "x" * 5000}),
        "",
        json.dumps(dict(reversed(list(good.items())))),  # same tuple, other key order
        json.dumps({"prompt": [{"role": "user", "content": "Hi?"}], "chosen": "Hey.",
                    "rejected": [{"role": "assistant", "content": "No."}]}),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    scan = scan_bucket(tmp_path, "dpo", time.time() + 1, max_chars=4000)
    reasons = {bad.line: bad.reason for bad in scan.invalid}
    assert set(reasons) == {2, 3, 4, 5, 6, 7}
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "not an object: list"
    assert "'rejected' is a required property" in reasons[4]
    assert "schema violation at chosen" in reasons[5]
    assert "schema violation at rejected" in reasons[6]
    assert reasons[7].startswith("over-long tuple")
    assert all(bad.path == str(path) for bad in scan.invalid)
    assert [t.line for t in scan.tuples] == [1, 10]
    assert scan.duplicates == 1
    assert scan.tuples[0].sha256 == canonical_hash(good)


def test_the_extraction_bucket_holds_sft_tuples_and_correction_pairs(tmp_path):
    """Kind "sft+dpo": a line naming `chosen` or `rejected` is held to the DPO schema, any other
    to the SFT schema, and the reason names the field either way."""
    sft = {"messages": [{"role": "user", "content": "note"},
                        {"role": "assistant", "content": '{"entities": []}'}]}
    pair = {"prompt": sft["messages"][:1], "chosen": '{"entities": []}',
            "rejected": '{"entities": [{"name": "Leeds", "type": "person"}]}'}
    (tmp_path / "corrections.jsonl").write_text("\n".join(json.dumps(r) for r in [
        sft, pair, {"prompt": "note", "chosen": "yes"}, {**sft, "rejected": ""},
        {"messages": []}]) + "\n")
    scan = scan_bucket(tmp_path, "sft+dpo", time.time() + 1)
    assert [t.record for t in scan.tuples] == [sft, pair]
    assert [t.record for t in scan.tuples if tuple_kind(t.record) == "dpo"] == [pair]
    reasons = {bad.line: bad.reason for bad in scan.invalid}
    assert "'rejected' is a required property" in reasons[3]
    assert "'prompt' is a required property" in reasons[4]
    assert "messages" in reasons[5]


def test_sft_accepts_messages_and_prompt_completion(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join([
        json.dumps({"messages": [{"role": "user", "content": "diff"},
                                 {"role": "assistant", "content": "Fix typo"}]}),
        json.dumps({"prompt": "diff", "completion": "Fix typo"}),
        json.dumps({"messages": [{"role": "user", "content": "only one"}]}),
        json.dumps({"messages": [{"role": "wizard", "content": "x"},
                                 {"role": "user", "content": "y"}]}),
    ]))
    scan = scan_bucket(tmp_path, "sft", time.time() + 1)
    assert [t.line for t in scan.tuples] == [1, 2]
    assert [bad.line for bad in scan.invalid] == [3, 4]


def test_near_duplicates_are_reported_not_dropped(corpora, tmp_path):
    record = json.loads((corpora / "engineering" / "click-commits.sft.jsonl")
                        .read_text().splitlines()[0])
    twin = json.loads(json.dumps(record))
    twin["messages"][-1]["content"] += "!"
    (tmp_path / "a.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(twin) + "\n")
    scan = scan_bucket(tmp_path, "sft", time.time() + 1)
    assert len(scan.tuples) == 2
    assert scan.near_duplicates == [(f"{tmp_path / 'a.jsonl'}:1", f"{tmp_path / 'a.jsonl'}:2")]


def test_files_that_arrive_later_and_pending_tuples(tmp_path):
    early, late = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    early.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n" +
                     json.dumps({"prompt": "c", "completion": "d"}) + "\n")
    late.write_text(json.dumps({"prompt": "e", "completion": "f"}) + "\n")
    now = time.time()
    os.utime(early, (now - 100, now - 100))
    scan = scan_bucket(tmp_path, "sft", now - 50)
    assert len(scan.tuples) == 2
    trained = {scan.tuples[0].sha256}
    assert [t.line for t in scan.pending(trained)] == [2]


@pytest.mark.parametrize("tenant", ["../etc", "a/b", "", "UPPER", ".hidden", "x" * 64, "a b"])
def test_unsafe_tenant_names_are_rejected(tenant):
    with pytest.raises(ValueError, match="unsafe tenant name"):
        bucket_name("engineering", tenant)


def test_bucket_names():
    assert bucket_name("engineering", "pointsav") == "engineering-pointsav"
    assert bucket_name("apprenticeship", "pointsav") == "apprenticeship-pointsav"
    with pytest.raises(ValueError, match="unknown role"):
        bucket_name("marketing", "pointsav")

"""The quality gate's statistic (gate.py), how a version's evidence is judged
(version_training.held_out_evaluation), and the extraction gate over streams
(extraction_gate.py)."""

import json
import shutil

import pytest

from yoyo_assets.adapters.extraction_gate import POOLED, judge_extractors
from yoyo_assets.adapters.gate import paired_difference
from yoyo_assets.datagraph.extraction.extractor import (DocumentExtraction, ExtractedEntity,
                                                        entity_key)
from yoyo_assets.datagraph.extraction.quality import load_labelled_set


def test_an_interval_that_crosses_zero_fails_the_gate_but_not_the_mean():
    # Eight held-out tuples: the adapter helps on average, but two tuples got much worse.
    base = [2.0, 2.1, 1.9, 2.2, 2.0, 2.3, 1.8, 2.0]
    adapter = [1.7, 1.8, 1.6, 1.9, 1.7, 2.0, 2.3, 2.5]
    diff = paired_difference(base, adapter)
    assert diff.mean < 0 < diff.high and diff.low < 0
    assert not diff.passes("upper_bound")
    assert diff.passes("mean")


def test_a_consistent_improvement_passes_and_the_interval_holds_the_mean():
    base = [2.0, 2.1, 1.9, 2.2, 2.0, 2.3, 1.8, 2.0, 2.4, 2.1]
    adapter = [b - 0.3 + 0.02 * i for i, b in enumerate(base)]
    diff = paired_difference(base, adapter, confidence=0.9)
    assert diff.low <= diff.mean <= diff.high < 0
    assert diff.passes("upper_bound") and diff.n == 10 and diff.confidence == 0.9
    assert paired_difference(base, adapter, confidence=0.9) == diff  # seeded: reproducible


def test_no_spread_gives_a_point_interval_and_bad_input_is_refused():
    diff = paired_difference([0.6931] * 4, [0.5] * 4)
    assert diff.low == diff.high == pytest.approx(0.5 - 0.6931)
    with pytest.raises(ValueError, match="paired"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="paired"):
        paired_difference([], [])


def _labelled(corpora, tmp_path):
    """The 48 research notes with their gold and 24 contact records (gold from their fields)."""
    folder = tmp_path / "labelled"
    shutil.copytree(corpora / "research", folder / "research")
    (folder / "contacts").mkdir()
    for path in sorted((corpora / "contacts").glob("*.json"))[:24]:
        shutil.copy(path, folder / "contacts" / path.name)
    gold = json.loads((corpora / "research" / "gold.json").read_text())
    (folder / "gold.json").write_text(json.dumps(
        {f"research/{name}": entities for name, entities in gold.items()}))
    (folder / "research" / "gold.json").unlink()
    return load_labelled_set(folder)


def _answering(labelled, share):
    """Extractions that find the first `share[stream]` of each document's gold names."""
    results = []
    for item in labelled:
        gold = item.gold[:round(len(item.gold) * share[item.document.stream])]
        entities = {entity_key(g.name, g.type or "person"): ExtractedEntity(
            entity_key(g.name, g.type or "person"), g.name, g.type or "person", [g.name], 1)
            for g in gold}
        results.append(DocumentExtraction(item.document.sha256, item.document.stream,
                                          item.document.path, list(entities.values()), 1))
    return results


def test_the_extraction_gate_rejects_a_candidate_better_on_notes_but_worse_on_contacts(
        corpora, tmp_path):
    labelled = _labelled(corpora, tmp_path)
    serving = _answering(labelled, {"research": 0.4, "contacts": 0.6})
    candidate = _answering(labelled, {"research": 0.9, "contacts": 0.2})
    verdict = judge_extractors(labelled, serving, candidate)
    research, contacts = verdict.differences["research"], verdict.differences["contacts"]
    assert research.low > 0 and contacts.high < 0
    assert not verdict.passed and verdict.reason.startswith("worse on contacts")
    # Better on both streams: passes; the same answers: not better beyond chance.
    better = judge_extractors(labelled, serving,
                              _answering(labelled, {"research": 0.8, "contacts": 0.9}))
    assert better.passed and better.differences[POOLED].low > 0, better.reason
    same = judge_extractors(labelled, serving, serving)
    assert not same.passed and same.reason.startswith("not better (upper_bound)")
    # On average only ("mean"): a pooled gain passes; worse on a stream still fails.
    slightly = _answering(labelled, {"research": 0.42, "contacts": 0.6})
    assert judge_extractors(labelled, serving, slightly, "mean").passed
    assert not judge_extractors(labelled, serving, candidate, "mean").passed

"""Extraction quality: scoring against gold, labelled sets, and the `extraction_quality` check in
a real Dagster run against the real vLLM server."""

import json
import shutil

import pytest
from tokenizers import Tokenizer
from dagster import AssetCheckSeverity, DagsterInstance, RunConfig

from yoyo_assets.datagraph.extraction.config import ExtractionConfig
from yoyo_assets.datagraph.extraction.extractor import (DocumentExtraction, EntityExtractor,
                                                        ExtractedEntity)
from yoyo_assets.datagraph.extraction.quality import (GoldEntity, LabelledSetError, QualityReport,
                                           SetNotScored, contact_gold, extract_and_score,
                                           load_labelled_set)
from yoyo_assets.definitions import build_definitions
from yoyo_assets.datagraph.resources import LabelledSet, demo_labelled_set

from .helpers import copy_documents, free_port
from .helpers import NIGHT, arrived_during


def extraction(*entities: tuple[str, str]) -> DocumentExtraction:
    return DocumentExtraction("0" * 64, "research", "note.md", [
        ExtractedEntity(f"{t}:{n.casefold()}", n, t, [n], 1) for n, t in entities], 1)


def test_scores_per_type_and_for_the_name_alone():
    report = QualityReport()
    gold = [GoldEntity("Grace Liu", "person"), GoldEntity("Denver", "location"),
            GoldEntity("Contoso", "company"), GoldEntity("Watch News", None)]
    # NFKC (full-width letters), case and whitespace do not matter; a wrong type counts for the
    # name alone but not for either type.
    report.add(gold, extraction(("ＧＲＡＣＥ  liu", "person"), ("Denver", "company"),
                                ("Rotterdam", "location")))
    s = report.scores
    assert (s["any"].tp, s["any"].fp, s["any"].fn) == (2, 1, 2)
    assert (s["person"].tp, s["person"].fp, s["person"].fn) == (1, 0, 0)
    assert (s["location"].tp, s["location"].fp, s["location"].fn) == (0, 1, 1)
    assert (s["company"].tp, s["company"].fp, s["company"].fn) == (0, 1, 1)
    assert s["any"].precision == pytest.approx(2 / 3) and s["any"].recall == 0.5
    assert s["any"].f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert report.confusion[("location", "company")] == 1
    assert report.confusion[("company", "missed")] == 1
    assert report.confusion[("unscored", "missed")] == 1
    assert report.confusion[("spurious", "location")] == 1
    table = report.markdown()
    assert "| person | 1.000 | 1.000 | 1.000 | 1 | 1 |" in table
    assert "| location | 0 | 1 | 0 | 0 | 0 | 0 |" in table  # gold location, predicted company
    # A document whose extraction failed: all of its gold is missed.
    report.add([GoldEntity("Osaka", "location")], None)
    assert report.scores["location"].fn == 2 and report.documents == 2


def test_contact_gold_comes_from_the_record_fields(corpora):
    record = json.loads((corpora / "contacts" / "legislator-A000055.json").read_text())
    gold = contact_gold(record)
    assert GoldEntity("Robert B. Aderholt", "person") in gold
    assert GoldEntity("United States House of Representatives", "company") in gold
    assert GoldEntity("House Committee on Appropriations", "company") in gold
    assert {g.name for g in gold if g.type == "location"} == {
        "Alabama", "Washington", "Cullman", "Jasper", "Tuscumbia"}
    assert len(gold) == len(set(gold))


def test_labelled_sets_load_with_their_gold(corpora, tmp_path):
    research = load_labelled_set(corpora / "research")
    assert len(research) == 48 and all(d.document.stream == "research" for d in research)
    first = research[0]
    # WNUT `group` is scored as company, `creative-work` by name only.
    assert GoldEntity("DRDO", "company") in first.gold
    assert GoldEntity("What Else is Making News", None) in first.gold
    for item in research:  # every gold name occurs in its note
        assert all(g.name.casefold() in item.document.text.casefold() for g in item.gold)
    demo = load_labelled_set(demo_labelled_set())
    assert {d.document.stream for d in demo} == {"transcripts", "research", "contacts"}
    assert all(d.gold for d in demo)

    # Contact records need no gold entry; other documents do, and bad files are named.
    shutil.copy(corpora / "contacts" / "legislator-A000055.json", tmp_path)
    (tmp_path / "gold.json").write_text("{}")
    [contact] = load_labelled_set(tmp_path)
    assert GoldEntity("Robert B. Aderholt", "person") in contact.gold
    (tmp_path / "note.md").write_text("- Elena Rossi met Lumen Labs.\n")
    with pytest.raises(LabelledSetError, match=r"note\.md: no gold entities"):
        load_labelled_set(tmp_path)
    (tmp_path / "gold.json").write_text('{"note.md": [\n  {"name": "Elena Rossi",\n')
    with pytest.raises(LabelledSetError, match=r"gold\.json:3: malformed JSON"):
        load_labelled_set(tmp_path)


def check_evaluation(result):
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation, {k: v.value for k, v in evaluation.metadata.items()}


def test_a_set_the_server_never_answered_gets_no_score(model_dir):
    """Documents deferred because no server answers are not scored as extracting nothing (a
    false F1 of 0 for the check, or for one side of the gate): the set is refused, saying why."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    labelled = load_labelled_set(demo_labelled_set())
    nobody = EntityExtractor(f"http://127.0.0.1:{free_port()}", "m", tokenizer, 2048,
                             **ExtractionConfig().extractor_settings(adapter=False))
    with pytest.raises(SetNotScored, match=rf"{len(labelled)} of {len(labelled)} labelled "
                       "documents deferred, not scored: inference server unreachable"):
        extract_and_score(nobody, labelled)


def test_quality_check_measures_reuses_and_warns_when_f1_falls(external_server, dagster_home,
                                                               tmp_path):
    """The demo night with its own labelled set: per-type figures in the check's metadata; a
    second run reuses them without a server; a worse extractor makes the check warn."""
    root = tmp_path / "data"
    demo = demo_labelled_set()
    copy_documents([demo / "research" / "field-notes.md"], root, "research",
                   arrived_during(NIGHT))
    defs = build_definitions(root, external_server, resources={"labelled_set": LabelledSet()})
    job = defs.resolve_job_def("datagraph_nightly")
    instance = DagsterInstance.get()

    first = job.execute_in_process(partition_key=NIGHT, instance=instance)
    assert first.success
    evaluation, figures = check_evaluation(first)
    assert evaluation.check_name == "extraction_quality" and evaluation.passed
    assert figures["labelled_documents"] == 10
    for type_ in ("any", "person", "company", "project", "account", "location"):
        assert 0.0 <= figures[f"{type_}_f1"] <= 1.0
    assert figures["person_gold"] == 19 and figures["any_gold"] == 62
    assert figures["any_f1"] > 0.3  # the demo documents are plain prose: the model finds names
    assert "| person |" in figures["quality_table"]
    assert "measured_in_run" not in figures

    # Unchanged extractor and set: the figures again, measured in the first run.
    second = job.execute_in_process(partition_key=NIGHT, instance=instance)
    evaluation, again = check_evaluation(second)
    assert again["measured_in_run"] == first.run_id and again["any_f1"] == figures["any_f1"]

    # One entity per answer: far fewer names found, and the check warns (it does not block).
    worse = job.execute_in_process(
        partition_key=NIGHT, instance=instance, run_config=RunConfig(
            ops={"extracted_entities": ExtractionConfig(max_entities=1)}))
    assert worse.success
    evaluation, fallen = check_evaluation(worse)
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    assert fallen["any_f1"] < figures["any_f1"] - 0.02
    assert fallen["previous_any_f1"] == figures["any_f1"]


def test_quality_check_names_a_broken_labelled_set(external_server, dagster_home, tmp_path):
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    (labelled / "note.md").write_text("- Elena Rossi met Lumen Labs.\n")
    (labelled / "gold.json").write_text('{"note.md": [}')
    defs = build_definitions(tmp_path / "data", external_server,
                             resources={"labelled_set": LabelledSet(path=str(labelled))})
    result = defs.resolve_job_def("datagraph_nightly").execute_in_process(
        partition_key=NIGHT, instance=DagsterInstance.get())
    assert result.success  # the night itself is not held up by its measuring stick
    evaluation, figures = check_evaluation(result)
    assert not evaluation.passed
    assert f"{labelled / 'gold.json'}:1: malformed JSON" in figures["reason"]

"""Compounding benchmark: consecutive nights in which the extraction bucket grows, each night's
Phase 2 training a version, its gate comparing it with the extractor then serving, and the next
night serving the winner. Scores the extractor served after each night on held-out sets.

    .venv/bin/python benchmarks/compounding.py --workdir /tmp/compound [--nights 3]
        [--notes-per-night 6] [--records-per-night 1] [--gate 8] [--score 8]
        [--training-config JSON] [--model-dir HF_FOLDER]
        [--skip-base | --base-scores OLD_WORKDIR/scores.json]

Each night materializes the extraction adapter for that night's partition (what the corpus
sensor requests when the bucket reaches its threshold; Phase 1 is not run: its quality check
measures the gate's set again) on a data root of its own, after adding that night's extraction
tuples to the `extraction-pointsav` bucket: the next `--notes-per-night` notes of
../shared/corpora/extraction/train and the next `--records-per-night` contact records from the
61st by name (gold from their fields), cut as the `extraction-tuples` command cuts them. The
gate's labelled set (YOYO_QUALITY_SET, also the nightly quality check's) is the first `--gate`
dev notes and `--gate` records from the 81st; the scored sets are the first `--score` research
notes and the first `--score` records: the four are disjoint. The served extractor (the base, or the newest passing version merged into a
copy of the base, as Phase 1 serves it on a CPU) is scored by the project's own scorer on a
managed vLLM server, and so is each night's version, passed or not (what the gate left on the
table). Prints one Markdown row per night for docs/benchmarks.md.
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.adapters.merged_weights import merged_model  # noqa: E402
from yoyo_assets.adapters.registry import serving_version, version_for_night  # noqa: E402
from yoyo_assets.datagraph.extraction.extractor import EntityExtractor  # noqa: E402
from yoyo_assets.datagraph.extraction.config import ExtractionConfig  # noqa: E402
from yoyo_assets.datagraph.corrections.tuples import extraction_tuples, write_tuples  # noqa: E402
from yoyo_assets.datagraph.extraction.quality import (SetNotScored, extract_and_score,  # noqa: E402
                                                      load_labelled_set)
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import (InferenceServer, ServerLaunch,  # noqa: E402
                                                 VllmOptions)

CORPORA = REPO.parent / "shared" / "corpora"
FIRST_NIGHT = date(2026, 11, 21)
#: Contact records by name: scored from the first, trained from the 61st, gated from the 81st.
TRAIN_RECORDS_FROM, GATE_RECORDS_FROM = 60, 80


def records() -> list[Path]:
    """The corpus's contact records in name order."""
    return sorted((CORPORA / "contacts").glob("*.json"))


def labelled_folder(target: Path, notes: Path | None, note_count: int,
                    contact_records: list[Path]) -> Path:
    """A labelled set: the first `note_count` notes of `notes` (with their gold) under
    `research/`, and `contact_records` under `contacts/` (gold from their fields)."""
    (target / "contacts").mkdir(parents=True)
    gold = {}
    if notes is not None:
        (target / "research").mkdir()
        source_gold = json.loads((notes / "gold.json").read_text())
        for name in sorted(source_gold)[:note_count]:
            shutil.copy(notes / name, target / "research" / name)
            gold[f"research/{name}"] = source_gold[name]
    for path in contact_records:
        shutil.copy(path, target / "contacts" / path.name)
    (target / "gold.json").write_text(json.dumps(gold))
    return target


def add_night_tuples(data_root: Path, night: int, args, tokenizer: Tokenizer, model: str) -> int:
    """Write night `night`'s extraction tuples into the bucket, dated three hours into it."""
    extractor = EntityExtractor("unused", model, tokenizer, 2048,
                                **ExtractionConfig().extractor_settings(adapter=True))
    notes = load_labelled_set(CORPORA / "extraction" / "train")
    start = (night - 1) * args.notes_per_night
    labelled = notes[start:start + args.notes_per_night]
    first = TRAIN_RECORDS_FROM + (night - 1) * args.records_per_night
    for path in records()[first:first + args.records_per_night]:
        one = data_root.parent / "records" / f"night-{night}" / path.name
        one.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, one)
    if args.records_per_night:
        labelled += load_labelled_set(data_root.parent / "records" / f"night-{night}")
    tuples = extraction_tuples(labelled, tokenizer, extractor.chunk_tokens,
                               extractor.answer_format, extractor.few_shot)
    target = data_root / "corpus" / "extraction-pointsav" / f"night-{night}.jsonl"
    write_tuples(tuples, target)
    arrived = datetime.combine(night_date(night), datetime.min.time(), timezone.utc)
    stamp = (arrived + timedelta(hours=3)).timestamp()
    os.utime(target, (stamp, stamp))
    return len(tuples)


def night_date(night: int) -> date:
    """The partition of night `night` (1, 2, ...)."""
    return FIRST_NIGHT + timedelta(days=night - 1)


def run_phase2(night: int, env: dict, args, log: Path) -> float:
    """Night `night`'s extraction adapter run (`dagster asset materialize`, as the sensor's run
    request would); its wall time in seconds."""
    config = json.loads(args.training_config or "{}")
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
               "yoyo_assets.definitions", "--select", "pointsav/extraction/adapter",
               "--partition", night_date(night).isoformat(), "--config-json",
               json.dumps({"ops": {"pointsav__extraction__adapter": {"config": config}}})]
    started = time.monotonic()
    with open(log, "a") as out:
        subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=False)
    return time.monotonic() - started


def score(model_dir: Path, tokenizer_dir: Path, adapter: bool, sets: list[Path],
          memory_share: float, log_dir: Path) -> list[dict]:
    """Extract `sets` with the model in `model_dir` on a managed server (its log in `log_dir`);
    one dict of scores per set."""
    server = InferenceServer(mode="managed", model_dir=str(model_dir), launch=ServerLaunch(
        log_dir=str(log_dir), vllm=VllmOptions(memory_share=memory_share)))
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    rows = []
    with server.serving(logging.getLogger("server")) as running:
        extractor = EntityExtractor(running.base_url, running.request_model, tokenizer,
                                    running.context_tokens(),
                                    **ExtractionConfig().extractor_settings(adapter))
        for folder in sets:
            try:
                report, quality = extract_and_score(extractor, load_labelled_set(folder))
            except SetNotScored as exc:
                sys.exit(f"{folder}: {exc}")
            m, s = quality.metrics(), quality.scores
            rows.append({"f1": m["any_f1"], "p": m["any_precision"], "r": m["any_recall"],
                         "company_r": s["company"].recall, "location_r": s["location"].recall,
                         "s": report.seconds})
    return rows


def ensure_scored(scores: dict, version, base: Path, work: Path, sets: list[Path],
                  memory_share: float) -> None:
    """Score `version` merged into a copy of `base` (as Phase 1 serves it) unless done."""
    name = f"v{version.number}"
    if name not in scores:
        merged = merged_model(version, base, work / "merged")
        scores[name] = score(merged, base, True, sets, memory_share, work / "logs")


def score_cells(rows: list[dict]) -> str:
    """Research F1 (P / R) and contacts F1 (company R, location R), two table cells."""
    r, c = rows
    return (f"**{r['f1']:.3f}** ({r['p']:.3f} / {r['r']:.3f}) | "
            f"**{c['f1']:.3f}** ({c['company_r']:.3f}, {c['location_r']:.3f})")


def version_cells(version, scores: dict) -> str:
    """The night's version: tuples and steps, its gate, its verdict and its held-out scores."""
    if version is None:
        return "none (see nights.log) | — | — | — | —"
    m, e = version.manifest, version.manifest.serving_check.extraction
    trained = f"v{m.version} ({len(m.trained_tuples)} / {len(m.held_out_tuples)}, {m.training.steps})"
    if e is None:
        gate = "no extraction gate"
    else:
        streams = "; ".join(f"{s} {d.serving_f1:.3f} → {d.candidate_f1:.3f}"
                            for s, d in e.intervals.items() if s != "pooled")
        gate = f"{e.serving.f1:.3f} → {e.candidate.f1:.3f} ({streams})"
    verdict = "passed" if version.passed_quality_gate else "kept local"
    return f"{trained} | {gate} | {verdict} | {score_cells(scores[f'v{m.version}'])}"


def prepare(work: Path, args) -> tuple[dict, Path, Path]:
    """A Dagster home, the gate's labelled set and the two scored sets under `work`; the
    environment of the nights' runs and the scored sets (research, contacts)."""
    home = work / "home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    all_records = records()
    gate = labelled_folder(work / "gate", CORPORA / "extraction" / "dev", args.gate,
                           all_records[GATE_RECORDS_FROM:GATE_RECORDS_FROM + args.gate])
    research = labelled_folder(work / "score-research", CORPORA / "research", args.score, [])
    contacts = labelled_folder(work / "score-contacts", None, 0, all_records[:args.score])
    env = {**os.environ, "YOYO_DATA_ROOT": str(work / "data"), "DAGSTER_HOME": str(home),
           "YOYO_QUALITY_SET": str(gate), "YOYO_VLLM_MEMORY_SHARE": str(args.memory_share)}
    return env, research, contacts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--notes-per-night", type=int, default=6)
    parser.add_argument("--records-per-night", type=int, default=1)
    parser.add_argument("--gate", type=int, default=8, help="dev notes and records gated on")
    parser.add_argument("--score", type=int, default=8, help="research notes and records scored")
    parser.add_argument("--training-config", default="",
                        help="run config of the adapter runs (default: the pipeline's)")
    parser.add_argument("--memory-share", type=float, default=0.25)
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="base model folder to extract and train with (e.g. the one "
                        "`python -m yoyo_assets gemma-model` makes; default: the embedded model)")
    parser.add_argument("--skip-base", action="store_true",
                        help="do not score the base (its rows read as not scored)")
    parser.add_argument("--base-scores", type=Path, default=None,
                        help="scores.json of an earlier run with the same --score: its base row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work, data_root = args.workdir, args.workdir / "data"
    if work.exists():
        sys.exit(f"{work} exists: give a new folder")
    env, research, contacts = prepare(work, args)
    base = args.model_dir or ensure_embedded_model(REPO / "var" / "data" / "models")
    if args.model_dir:
        env.update(YOYO_BASE_MODEL_DIR=str(base), YOYO_EXTRACTION_MODEL_DIR=str(base))
    tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))

    if args.skip_base:  # a base scored elsewhere (its ~12 min on Gemma's padded answers)
        scores = {}
    elif args.base_scores:
        scores = {"base": json.loads(args.base_scores.read_text())["base"]}
    else:
        scores = {"base": score(base, base, False, [research, contacts], args.memory_share,
                                work / "logs")}
        (work / "scores.json").write_text(json.dumps(scores, indent=1))
    print("| night | tuples added / in bucket | Phase 2 wall time | version trained (train / "
          "held out, steps) | gate F1 serving → candidate (pooled; per stream) | gate | "
          "that version: research F1 (P / R) | that version: contacts F1 (company R, "
          "location R) | served next | research F1 (P / R) | contacts F1 (company R, "
          "location R) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    total, folder = 0, data_root / "adapters" / "pointsav" / "extraction"
    for night in range(1, args.nights + 1):
        added = add_night_tuples(data_root, night, args, tokenizer, base.name)
        total += added
        seconds = run_phase2(night, env, args, work / "nights.log")
        version = version_for_night(folder, night_date(night).isoformat())
        served = serving_version(folder)
        for adapter in filter(None, (version, served)):
            ensure_scored(scores, adapter, base, work, [research, contacts], args.memory_share)
        (work / "scores.json").write_text(json.dumps(scores, indent=1))
        served_name = f"v{served.number}" if served else "base"
        served_cells = (score_cells(scores[served_name]) if served_name in scores
                         else "not scored | not scored")
        print(f"| {night} | {added} / {total} | {seconds / 60:.1f} min | "
              f"{version_cells(version, scores)} | {served_name} | {served_cells} |", flush=True)
    if args.skip_base:
        return
    base_r, base_c = scores["base"]
    print(f"\nbase: research F1 {base_r['f1']:.3f}, contacts F1 {base_c['f1']:.3f} "
          f"(company R {base_c['company_r']:.3f}, location R {base_c['location_r']:.3f})")


if __name__ == "__main__":
    main()

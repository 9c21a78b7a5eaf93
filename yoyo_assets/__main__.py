"""Command line: `python -m yoyo_assets night [--night YYYY-MM-DD] [--demo]`, and
`python -m yoyo_assets recover [--after-boot]` (run_health.py).

Runs one night in this process against the instance in $DAGSTER_HOME (default
./var/dagster_home, seeded with the project's dagster.yaml): Phase 1 (documents -> DataGraph), then
Phase 2 (corpus buckets; each bucket's sensor decision; the adapter runs it requests), and prints
where the graph, the adapters, the runs and the logs are. `--demo` first copies the shipped demo
documents and corpus buckets into the data root, dated to that night. Scheduled and backfilled
runs go through `dagster dev` / the daemon instead.
"""

import argparse
import json
import logging
import os
import shutil
import sys
from datetime import timedelta
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Files of demo_data/ that are not documents: notes, and the demo's own labelled set (gold.json,
#: read in place by the extraction quality check).
NOT_DATA = {"README.md", "gold.json"}


def _prepare_dagster_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path("var/dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (REPO_ROOT / "dagster.yaml").is_file():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def install_demo_data(data_root: Path, arrived_at: float) -> int:
    """Copy the shipped demo documents (`<stream>/`) and corpus buckets (`corpus/<bucket>/`),
    not the files in NOT_DATA, into `data_root` (files already there are left alone) with
    modification time `arrived_at` (Unix seconds). Returns how many files were copied."""
    copied = 0

    def copy_tree(source, target: Path) -> None:
        nonlocal copied
        for item in source.iterdir():
            if item.is_dir():
                copy_tree(item, target / item.name)
            elif item.name not in NOT_DATA and not (target / item.name).exists():
                target.mkdir(parents=True, exist_ok=True)
                (target / item.name).write_bytes(item.read_bytes())
                os.utime(target / item.name, (arrived_at, arrived_at))
                copied += 1

    copy_tree(resources.files("yoyo_assets") / "demo_data", data_root)
    return copied


def run_night(night: str | None, demo: bool, training_config: dict | None = None) -> int:
    home = _prepare_dagster_home()
    from dagster import DagsterInstance

    from .definitions import defs
    from .partitions import nights
    from .resources.graph_store import open_graph
    from .run_health import fail_dead_runs, process_tags
    from .settings import data_root

    night = night or nights.get_last_partition_key()
    root = data_root()
    if demo:
        window = nights.time_window_for_partition_key(night)
        copied = install_demo_data(root, (window.start + timedelta(hours=1)).timestamp())
        print(f"demo: {copied} documents and corpus files copied into {root}")
    instance = DagsterInstance.get()
    for run_id in fail_dead_runs(instance):
        print(f"run {run_id} had died (killed or preempted): marked failed, its slots freed")
    job = defs.resolve_job_def("datagraph_nightly")
    print(f"running datagraph_nightly for night {night} (instance {home}) ...", flush=True)
    tags = process_tags()
    result = job.execute_in_process(partition_key=night, instance=instance,
                                    raise_on_error=False, tags=tags)
    graph_path = defs.resources["graph_store"].path
    with open_graph(graph_path) as graph:
        counts = graph.counts()
        top = graph.query("MATCH (e:Entity) RETURN e.name, e.type, e.mention_count "
                          "ORDER BY e.mention_count DESC, e.name LIMIT 8")
    extraction = result.asset_materializations_for_node("extracted_entities")
    meta = extraction[0].metadata if extraction else {}
    print()
    print(f"run:      {result.run_id} ({'success' if result.success else 'FAILED'})")
    if meta:
        print(f"night:    {meta['documents_ok'].value} documents ok, "
              f"{meta['documents_failed'].value} failed, {meta['documents_deferred'].value} "
              f"deferred to the next run, {meta['entities'].value} entities")
    print(f"graph:    {graph_path} ({counts['documents']} documents, {counts['entities']} "
          f"entities, {counts['mentions']} MENTIONS)")
    for name, type_, mentions in top:
        print(f"            {type_:9} {name} ({mentions})")
    for evaluation in result.get_asset_check_evaluations():
        figures = {k: v.value for k, v in evaluation.metadata.items()}
        if "any_f1" in figures:
            print(f"quality:  F1 {figures['any_f1']:.3f} (P {figures['any_precision']:.3f}, R "
                  f"{figures['any_recall']:.3f}) on {figures.get('labelled_documents')} labelled "
                  f"documents, by {meta['extractor'].value if meta else '?'}"
                  + (" (unchanged, measured before)" if "measured_in_run" in figures else ""))
        else:
            print(f"quality:  not measured: {figures.get('reason')}")
    print(f"run logs: {home / 'storage' / result.run_id / 'compute_logs'} "
          f"(and the event log in {home / 'history'})")
    print(f"server:   {root / 'logs'} (inference server output)")
    phase2_ok = run_phase2(defs, instance, night, tags, training_config or {})
    from .datagraph.assets import extractor_label, serving_extractor

    upcoming = serving_extractor(defs.resources["inference_server"],
                                 defs.resources["adapter_store"], logging.getLogger(__name__))
    print(f"next:     the next night extracts with {extractor_label(upcoming)}")
    print(f"UI:       DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml")
    return 0 if result.success and phase2_ok else 1


def run_phase2(defs, instance, night: str, tags: dict[str, str],
               training_config: dict) -> bool:
    """Phase 2 of `night` in this process, as the daemon would run it: materialize the corpus
    buckets, put each bucket's materialization to its sensor's decision, and run the adapter
    jobs it requests, with `training_config` (TrainingConfig fields) as run config. A version
    that a killed run saved but never recorded or published is recorded and published now (the
    daemon's run retry does the same). Prints each adapter's path and eval delta; returns
    whether all runs succeeded."""
    from dagster import AssetKey, AssetRecordsFilter, RunRequest

    from .adapters.assets import unrecorded_version
    from .adapters.corpus import ROLES
    from .adapters.registry import version_for_night
    from .automation import adapter_run_request
    from .jobs import adapter_job_name
    from .settings import adapter_threshold, tenants

    print(f"\nrunning corpus_nightly for night {night} ...", flush=True)
    corpus = defs.resolve_job_def("corpus_nightly").execute_in_process(
        partition_key=night, instance=instance, raise_on_error=False, tags=tags)
    ok = corpus.success
    store = defs.resources["adapter_store"]
    for tenant in tenants():
        for role in ROLES:
            key = AssetKey([tenant, role, "corpus_bucket"])
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, asset_partitions=[night]), limit=1,
                ascending=False).records
            if not records:
                continue
            job_name = adapter_job_name(tenant, role)
            decision = adapter_run_request(instance, f"{role}-{tenant}", job_name,
                                           records[0].event_log_entry, adapter_threshold())
            if isinstance(decision, RunRequest):
                print(f"{role}-{tenant}: training ({job_name}) ...", flush=True)
                run_tags = {**tags, **decision.tags, "dagster/run_key": decision.run_key}
            elif unrecorded_version(instance, store, tenant, role, night) is not None:
                print(f"{role}-{tenant}: recording and publishing the version a killed run "
                      f"saved ({job_name}) ...", flush=True)
                run_tags = tags
            else:
                print(f"skipped:  {decision.skip_message}")
                continue
            run_config = {"ops": {f"{tenant}__{role}__adapter": {"config": training_config}}}
            result = defs.resolve_job_def(job_name).execute_in_process(
                partition_key=night, instance=instance, raise_on_error=False, tags=run_tags,
                run_config=run_config if training_config else None)
            ok = ok and result.success
            version = version_for_night(store.version_folder(tenant, role), night)
            if version is None:
                print(f"{role}-{tenant}: run {result.run_id} "
                      f"{'trained nothing' if result.success else 'FAILED'}")
                continue
            m = version.manifest
            gate = "passed" if version.passed_quality_gate else "FAILED (kept local)"
            print(f"adapter:  {version.path}\n          eval loss {m['base_eval_loss']:.4f} "
                  f"(base) -> {m['eval_loss']:.4f} ({m['eval_loss'] - m['base_eval_loss']:+.4f}),"
                  f" quality gate {gate}")
            overlay = m.get("serving_check") or {}
            print(f"          vLLM overlay: {'served' if overlay.get('served') else 'NOT served'}"
                  f", {overlay.get('differing', 0)}/{overlay.get('prompts', 0)} answers differ "
                  "from the base's" + (f"; {overlay['error']}" if overlay.get("error") else ""))
            if overlay.get("extraction"):
                e = overlay["extraction"]
                print(f"          extraction F1 {e['candidate_f1']:.3f} vs "
                      f"{e['serving_f1']:.3f} of {e['serving_extractor']} (serving)")
    return ok


def recover_runs(after_boot: bool) -> int:
    """`recover`: fail the dead runs of the instance in $DAGSTER_HOME; prints each."""
    _prepare_dagster_home()
    from dagster import DagsterInstance

    from .run_health import fail_dead_runs

    failed = fail_dead_runs(DagsterInstance.get(), after_boot=after_boot)
    for run_id in failed:
        print(f"run {run_id}: marked failed, its slots freed (run retries relaunch it)")
    print(f"{len(failed)} dead run(s)")
    return 0


def write_extraction_tuples(labelled_dir: str, tenant: str | None, name: str,
                            limit: int = 0) -> int:
    """`extraction-tuples`: one SFT tuple per chunk of each labelled document, cut as the
    extractor cuts them (its tokenizer, context and default chunk size), written as a new file
    `<name>.jsonl` of the tenant's extraction bucket; `limit` > 0: the first `limit`
    documents only."""
    from tokenizers import Tokenizer

    from .datagraph.extraction import EntityExtractor
    from .datagraph.extraction_config import ExtractionConfig
    from .datagraph.extraction_tuples import extraction_tuples, write_tuples
    from .datagraph.quality import load_labelled_set
    from .definitions import defs
    from .settings import extraction_tenant

    server = defs.resources["inference_server"]
    tokenizer = Tokenizer.from_file(str(server.tokenizer_file()))
    settings = ExtractionConfig().extractor_settings(adapter=True)
    extractor = EntityExtractor("unused", server.model, tokenizer, server.max_model_len,
                                **settings)
    labelled = load_labelled_set(Path(labelled_dir))[:limit or None]
    tuples = extraction_tuples(labelled, tokenizer, extractor.chunk_tokens,
                               extractor.answer_format, extractor.few_shot)
    target = defs.resources["adapter_store"].bucket_folder(
        "extraction", tenant or extraction_tenant()) / f"{name}.jsonl"
    write_tuples(tuples, target)
    print(f"{len(tuples)} extraction tuples ({extractor.chunk_tokens}-token chunks) -> {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yoyo_assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    night = commands.add_parser("night", help="run one night (Phase 1, then Phase 2) in this process")
    night.add_argument("--night", help="partition key YYYY-MM-DD (default: the last night)")
    night.add_argument("--demo", action="store_true", help="first copy in the demo documents and corpus buckets")
    night.add_argument("--training-config", type=json.loads, default={}, metavar="JSON",
                       help='TrainingConfig fields for every adapter run, e.g. \'{"epochs": 1}\'')
    recover = commands.add_parser(
        "recover", help="fail the runs whose process died and free their slots, so that run "
        "retries relaunch them (run once at boot with --after-boot, before the daemon)")
    recover.add_argument("--after-boot", action="store_true",
                         help="this machine has just started: every unfinished run is dead")
    tuples = commands.add_parser(
        "extraction-tuples", help="turn a labelled set (documents + gold.json) into extraction "
        "SFT tuples in a tenant's extraction bucket")
    tuples.add_argument("labelled_dir")
    tuples.add_argument("--tenant", help="default: YOYO_EXTRACTION_TENANT or the first tenant")
    tuples.add_argument("--name", default="labelled", help="file name in the bucket (no .jsonl)")
    tuples.add_argument("--limit", type=int, default=0, help="first N documents only")
    args = parser.parse_args(argv)
    if args.command == "recover":
        return recover_runs(args.after_boot)
    if args.command == "extraction-tuples":
        return write_extraction_tuples(args.labelled_dir, args.tenant, args.name, args.limit)
    return run_night(args.night, args.demo, args.training_config)


if __name__ == "__main__":
    sys.exit(main())

"""Fan-out benchmark: a night's extraction on one inference server and split over two.

    .venv/bin/python benchmarks/fan_out.py [--documents 6] [--stream contacts]

Starts two vLLM servers on loopback (the embedded model, the managed server's settings, each
allowed a fifth of RAM), then runs the same night twice, each in a fresh data root and Dagster
instance, through Dagster's multiprocess executor with the `gpu` pool at two slots: with
`YOYO_INFERENCE_URL` naming one server, then both. The first `--documents` files of the stream
in ../shared/corpora, default run config, no labelled set (the quality check is left
unmeasured, so the time is the extraction's). Reports per run: shards, documents extracted, the
slowest shard's extraction time (seconds, the asset's `seconds`) and documents/s over it. Prints
a Markdown section for docs/benchmarks.md. On a 2-core machine both servers share the same
cores, so this shows the mechanics and their overhead, not a speed-up.
"""

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dagster import DagsterInstance, execute_job, reconstructable  # noqa: E402

from yoyo_assets.definitions import build_definitions  # noqa: E402
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402
from yoyo_assets.shared.inference_server import (InferenceServer, ServerLaunch,  # noqa: E402
                                                 VllmOptions)
from yoyo_assets.shared.partitions import nights_partitions  # noqa: E402
from yoyo_assets.shared.settings import GPU_POOL, Settings  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"
NIGHT = "2026-11-20"
PATTERNS = {"contacts": "*.json", "research": "*.md", "transcripts": "*.md"}


def nightly_job():
    """Phase 1's job as the environment configures it (rebuilt in each step's process)."""
    return build_definitions().resolve_job_def("datagraph_nightly")


def one_night(urls: list[str], files: list[Path], stream: str, tokenizer: Path, work: Path):
    """Run the night on `urls`; (shards, documents ok, seconds of the slowest shard)."""
    root, home = work / "data", work / "home"
    (root / stream).mkdir(parents=True)
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    night = nights_partitions(Settings.from_env()).time_window_for_partition_key(NIGHT)
    arrived = (night.start + timedelta(hours=3)).timestamp()
    for source in files:
        shutil.copyfile(source, root / stream / source.name)
        os.utime(root / stream / source.name, (arrived, arrived))
    # No labelled set: the quality check is left unmeasured, so the wall time is extraction's.
    os.environ.update(DAGSTER_HOME=str(home), YOYO_DATA_ROOT=str(root),
                      YOYO_QUALITY_SET=str(work / "no-labelled-set"),
                      YOYO_INFERENCE_MODE="external", YOYO_INFERENCE_URL=",".join(urls),
                      YOYO_EXTRACTION_TOKENIZER=str(tokenizer))
    with DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 2)
        result = execute_job(reconstructable(nightly_job), instance,
                             tags={"dagster/partition": NIGHT})
        assert result.success
        [extracted] = result.asset_materializations_for_node("extracted_entities")
        meta = {k: v.value for k, v in extracted.metadata.items()}
        # The merged report's seconds: the slowest shard's extraction, server start excluded.
        return len(meta["shards"]), meta["documents_ok"], meta["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--stream", choices=sorted(PATTERNS), default="contacts")
    args = parser.parse_args()
    files = sorted((CORPORA / args.stream).glob(PATTERNS[args.stream]))[:args.documents]
    work = Path(tempfile.mkdtemp(prefix="yoyo-fan-out-"))
    model_dir = ensure_embedded_model(REPO / "var" / "data" / "models")  # the default, kept
    rows = []
    with ExitStack() as stack:
        servers = [stack.enter_context(InferenceServer(
            mode="managed", model_dir=str(model_dir), launch=ServerLaunch(
                log_dir=str(work / f"server-{i}"), vllm=VllmOptions(memory_share=0.2))
        ).serving(logging.getLogger("fan_out"))) for i in range(2)]
        urls = [s.base_url for s in servers]
        for count in (1, 2):
            shards, ok, wall = one_night(urls[:count], files, args.stream,
                                         model_dir / "tokenizer.json", work / f"run-{count}")
            rows.append((count, shards, ok, wall))
    shutil.rmtree(work, ignore_errors=True)
    print(f"## Extraction fanned out (x86_64, {os.cpu_count()} cores, {platform.python_version()})\n")
    print(f"{len(files)} {args.stream} documents, default run config, multiprocess executor.\n")
    print("| inference servers | shards | documents ok | slowest shard (s) | documents/s |")
    print("|---|---|---|---|---|")
    for count, shards, ok, wall in rows:
        print(f"| {count} | {shards} | {ok} | {wall:.1f} | {ok / wall:.3f} |")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

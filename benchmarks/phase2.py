"""Phase 2 benchmark: adapter training throughput and peak memory, through the pipeline's own
`train_adapter` (trl + peft + bitsandbytes).

    .venv/bin/python benchmarks/phase2.py --kind sft --tuples 40 [--max-length 512]
        [--quantization nf4|none] [--packing] [--base-model DIR]

Trains on the `--tuples` shortest tuples of ../shared/corpora (engineering for SFT, apprenticeship
for DPO), 2 epochs, the pipeline's defaults otherwise, and prints one Markdown table row for
docs/benchmarks.md: training tokens/s (tokens the trainer fed, padding excluded, over the
`train()` time), peak memory (process RSS on a CPU; `torch.cuda.max_memory_allocated` on a GPU),
eval loss of base and adapter. Run each configuration in its own process: RSS peaks are per
process.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.adapters.corpus import scan_bucket  # noqa: E402
from yoyo_assets.adapters.training import (TrainingConfig, split_tuples,  # noqa: E402
                                           train_adapter)
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["sft", "dpo"], default="sft")
    parser.add_argument("--tuples", type=int, default=40)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--base-model", type=Path, default=None)
    args = parser.parse_args()

    folder = CORPORA / ("engineering" if args.kind == "sft" else "apprenticeship")
    scan = scan_bucket(folder, args.kind, time.time())
    tuples = sorted(scan.tuples, key=lambda t: (len(str(t.record)), t.sha256))[:args.tuples]
    train, held_out = split_tuples(tuples, 0.1)
    base = args.base_model or ensure_embedded_model(REPO / "var" / "test-cache" / "models")
    config = TrainingConfig(max_length=args.max_length, load_in_4bit=args.quantization == "nf4",
                            packing=args.packing)
    with tempfile.TemporaryDirectory() as scratch:
        result = train_adapter(args.kind, train, held_out, config, base, Path(scratch) / "work",
                               Path(scratch) / "out", log=lambda m: print(m, file=sys.stderr))
    print(f"| {args.kind.upper()} | {args.quantization} | {'yes' if args.packing else 'no'} | "
          f"{len(train)} | {args.max_length} | {result.steps} | {result.train_tokens} | "
          f"{result.tokens_per_s:.1f} | {result.peak_memory_bytes / 2**30:.2f} "
          f"({result.peak_memory_kind}) | {result.train_seconds:.0f} | "
          f"{result.base_eval_loss:.3f} → {result.eval_loss:.3f} |")


if __name__ == "__main__":
    main()

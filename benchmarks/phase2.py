"""Phase 2 benchmark: adapter training throughput, peak memory and held-out quality, through the
pipeline's own `train_adapter` (trl + peft + bitsandbytes).

    .venv/bin/python benchmarks/phase2.py --kind sft --tuples 40 [--max-length 512]
        [--quantization nf4|none] [--packing] [--over-max-length] [--base-model DIR]
        [--gradient-checkpointing on|off|default] [--precompute-ref on|off]
        [--folder BUCKET_FOLDER]

Trains on `--tuples` tuples of ../shared/corpora (engineering for SFT, apprenticeship for DPO;
`--folder`: another bucket folder, such as the demo's `extraction-pointsav`):
the shortest ones, or with `--over-max-length` the first ones (in file order) longer than
max length, which the fitting must shorten. 2 epochs, the pipeline's defaults otherwise. Prints
one Markdown table row for docs/benchmarks.md: training tokens/s (tokens the trainer fed,
padding excluded, over the `train()` time), peak memory (process RSS on a CPU;
`torch.cuda.max_memory_allocated` on a GPU), per-tuple held-out loss of base and adapter with
the paired difference's 95% bootstrap interval, the step kept, and the fitting's counts. Run
each configuration in its own process: RSS peaks are per process.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.adapters.corpus import scan_bucket  # noqa: E402
from yoyo_assets.adapters.fitting import sequence_length  # noqa: E402
from yoyo_assets.adapters.training import (TrainingConfig, dpo_example,  # noqa: E402
                                           sft_example, split_tuples, train_adapter)
from yoyo_assets.adapters.version_training import held_out_evaluation  # noqa: E402
from yoyo_assets.shared.embedded_model import ensure_embedded_model  # noqa: E402

CORPORA = REPO.parent / "shared" / "corpora"


def choose(args, base: Path) -> list:
    """The tuples to train on (see the module's help)."""
    folder = args.folder or CORPORA / ("engineering" if args.kind == "sft" else "apprenticeship")
    tuples = scan_bucket(folder, args.kind, time.time()).tuples
    if not args.over_max_length:
        return sorted(tuples, key=lambda t: (len(str(t.record)), t.sha256))[:args.tuples]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    to_example = sft_example if args.kind == "sft" else dpo_example
    return [t for t in tuples
            if sequence_length(tokenizer, to_example(t.record)) > args.max_length][:args.tuples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["sft", "dpo"], default="sft")
    parser.add_argument("--tuples", type=int, default=40)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--over-max-length", action="store_true")
    parser.add_argument("--base-model", type=Path, default=None)
    parser.add_argument("--gradient-checkpointing", choices=["on", "off", "default"],
                        default="default")
    parser.add_argument("--precompute-ref", choices=["on", "off"], default="on",
                        help="DPO: the reference's log-probabilities once before training")
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()

    base = args.base_model or ensure_embedded_model(REPO / "var" / "test-cache" / "models")
    tuples = choose(args, base)
    checkpointing = {"on": True, "off": False, "default": None}[args.gradient_checkpointing]
    config = TrainingConfig(max_length=args.max_length, load_in_4bit=args.quantization == "nf4",
                            packing=args.packing, gradient_checkpointing=checkpointing,
                            precompute_ref_log_probs=args.precompute_ref == "on")
    train, held_out = split_tuples(tuples, config.held_out_fraction, config.min_held_out_tuples)
    with tempfile.TemporaryDirectory() as scratch:
        result = train_adapter(args.kind, train, held_out, config, base, Path(scratch) / "work",
                               Path(scratch) / "out", log=lambda m: print(m, file=sys.stderr))
    h = held_out_evaluation(result, config, len(tuples))
    # The trainer's whole time (loading, reference pass, training, evaluations), beside the
    # table's training-only figure: a reference pass before training is not in `train()`.
    print(f"whole training {result.duration_s:.1f} s", file=sys.stderr)
    fit = result.fit
    print(f"| {args.kind.upper()} | {args.quantization} | {'yes' if args.packing else 'no'} | "
          f"{args.gradient_checkpointing} | "
          f"{result.train_examples} / {result.held_out_examples} | {args.max_length} | "
          f"{result.steps} | {result.train_tokens} | {result.tokens_per_s:.1f} | "
          f"{result.peak_memory_bytes / 2**30:.2f} ({result.peak_memory_kind}) | "
          f"{result.train_seconds:.0f} | {result.base_eval_loss:.3f} → {result.eval_loss:.3f} "
          f"[{h.interval_low:+.3f}, {h.interval_high:+.3f}] | {h.kept_step} | "
          f"{fit.prompts_shortened} / {fit.answers_cut} / {sum(fit.dropped.values())} |")


if __name__ == "__main__":
    main()

"""Entity resolution of person mentions (issue 46), measured.

    .venv/bin/python benchmarks/resolution.py [--corpora ../shared/corpora] \
        [--history 1000000] [--night 1000]

1. On `resolution/` with its gold mentions as input and the members' contact records
   (`contacts/`) as anchors: B-cubed precision, recall, F1 and pairwise precision and recall of
   today's key, the surname alone, the resolver's rules and the splink model (m by
   expectation maximisation; and m from the labels, trained on one half of the notes and
   scored on the other, both ways), by the same scorer; how many mentions were
   linked to a contact record and whether to the labelled member; the resolver's time per 1,000
   mentions; the mentions it kept apart, with their reason.
2. One night of `--night` new mentions against `--history` anchors generated here (given names
   and surnames drawn from pools, so that a surname block holds ~20 anchors; each night mention
   a short form, a full name or an unknown person): the time to index the anchors, the time to
   resolve the night, and the process's peak RSS.
"""

import argparse
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.resolution.evaluation import (load_anchors, resolve_labelled,  # noqa: E402
                                               undecidable)
from yoyo_assets.resolution.linkage import link  # noqa: E402
from yoyo_assets.resolution.resolver import Anchor, Mention, Resolver  # noqa: E402
from yoyo_assets.resolution.scoring import score_clusters  # noqa: E402

#: 1,000 made-up given names of three syllables (distinct enough that Jaro-Winkler rarely
#: joins two: a block's full names mostly name one anchor, its short forms several).
GIVEN = [a + b + c for a in ("ba", "ko", "mi", "ru", "te", "lo", "sa", "vi", "de", "nu")
         for b in ("ran", "lek", "mis", "tov", "dun", "pel", "gar", "sio", "bek", "han")
         for c in ("a", "o", "is", "en", "ul", "ar", "ie", "os", "im", "eth")]


def splink_from_labels(report, anchors: list[Anchor]):
    """The splink model with m from the gold labels, two folds by note number: each half of
    the mentions is scored by a model trained on the other half's labels."""
    mentions = [r.mention for r in report.resolutions]
    gold = [f"bioguide:{g}" for g in report.gold]
    clusters: list = [None] * len(mentions)
    for fold in (0, 1):
        held = [int(m.document.removeprefix("note-")[:4]) % 2 == fold for m in mentions]
        links = link(mentions, anchors, labels=[None if h else g for h, g in zip(held, gold)])
        for n, (h, x) in enumerate(zip(held, links)):
            if h:
                clusters[n] = x.anchor or f"apart:{n}"
    return score_clusters(clusters, gold)


def labelled(corpora: Path) -> None:
    anchors = load_anchors(corpora / "contacts")
    report = resolve_labelled(corpora / "resolution", anchors)
    report.scores["splink, m from labels (two folds)"] = splink_from_labels(report, anchors)
    print("| clustering of the person mentions | B-cubed P | B-cubed R | B-cubed F1 | "
          "pairwise P | pairwise R |\n|---|---|---|---|---|---|")
    for name, s in report.scores.items():
        print(f"| {name} | {s.bcubed_precision:.3f} | {s.bcubed_recall:.3f} | "
              f"{s.bcubed_f1:.3f} | {s.pairwise_precision:.3f} | {s.pairwise_recall:.3f} |")
    linked = [(r, g) for r, g in zip(report.resolutions, report.gold) if r.anchored]
    right = sum(r.entity == f"bioguide:{g}" for r, g in linked)
    count = len(report.resolutions)
    print(f"\n{len(linked)} of {count} mentions linked to a contact record, {right} to the "
          f"labelled member; {1e6 * report.seconds / count:.0f} ms per 1,000 mentions "
          f"({report.seconds * 1000:.1f} ms for {count})\n")
    print("| note | mention | labelled | kept apart because |\n|---|---|---|---|")
    for resolution in undecidable(report):
        gold = report.gold[report.resolutions.index(resolution)]
        print(f"| {resolution.mention.document} | {resolution.mention.name} | {gold} | "
              f"{resolution.reason} |")


def generated(history: int, night: int) -> None:
    rng = random.Random(46)
    surnames = [f"surname{n}" for n in range(history // 20)]
    started = time.perf_counter()
    anchors = [Anchor(f"generated:{n}", "", (rng.choice(GIVEN),), (rng.choice(surnames),),
                      rng.choice(("house", "senate")), None, ())
               for n in range(history)]
    made = time.perf_counter() - started
    started = time.perf_counter()
    resolver = Resolver(anchors)
    indexed = time.perf_counter() - started
    mentions = []
    for n in range(night):
        anchor = rng.choice(anchors)
        form = n % 3
        name = (f"Sen. {anchor.surnames[0]}" if form == 0 else
                f"{anchor.given_names[0]} {anchor.surnames[0]}" if form == 1 else
                f"Unknown Person{n}")
        mentions.append(Mention(f"doc{n // 2}", name))
    started = time.perf_counter()
    for first in range(0, night, 2):
        resolver.resolve_document(mentions[first].document, mentions[first:first + 2])
    resolved = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {history:,} anchors generated | {made:.1f} s |\n| indexed by surname | "
          f"{indexed:.1f} s |\n| {night:,} mentions resolved | {resolved:.2f} s |\n"
          f"| peak RSS | {peak:.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpora", type=Path, default=REPO.parent / "shared" / "corpora")
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--night", type=int, default=1000)
    args = parser.parse_args()
    labelled(args.corpora)
    print("\n| one night against a generated history | |\n|---|---|")
    generated(args.history, args.night)


if __name__ == "__main__":
    main()

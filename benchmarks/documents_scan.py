"""The `documents` step over a long history: time and peak resident memory of a night that
brings nothing new and of one that brings `--new` documents, each in its own process (its
peak RSS is that process's), with the scan index as earlier nights left it.

    .venv/bin/python benchmarks/documents_scan.py [--history 1000000] [--new 100] \
        [--root /tmp/yoyo-history] [--without-index]

The history is generated once under `--root` (research notes of ~120 bytes, dated a day before
the night) and reused by later runs. Setup scans it once with the index and marks every hash
as in the ledger, as the `documents` asset does when the graph's ledger knows them (setup is
timed too: the first night after the upgrade). `--without-index` also times the scan without
the index (every file opened and parsed: the cost before the index).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yoyo_assets.datagraph.resources import DocumentStreams  # noqa: E402

DAY = 86_400


def generate(root: Path, count: int, start: int, when: float) -> None:
    """Notes `start`..`start + count - 1` in `root/research/`, modified at `when`."""
    folder = root / "research"
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(start, start + count):
        path = folder / f"note-{number:08}.md"
        path.write_text(f"# Note {number}\n\nAda Lovelace met Charles Babbage in London "
                        f"about engine {number}.\n")
        os.utime(path, (when, when))


def night(root: Path, arrived_by: float, index: bool) -> dict:
    """One `documents` step in this process: scan, then the ledger marks (no graph here: every
    hash found is new). Returns its figures."""
    streams = DocumentStreams(root=str(root))
    started = time.monotonic()
    if index:
        scan = streams.scan(arrived_by)
        streams.mark_recorded({d.sha256 for d in scan.documents})
    else:
        from yoyo_assets.datagraph.documents.streams import scan_streams

        scan = scan_streams(root, arrived_by)
    return {"seconds": round(time.monotonic() - started, 2), "documents": len(scan.documents),
            "opened": scan.opened, "unchanged": scan.unchanged,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def in_child(root: Path, arrived_by: float, index: bool = True) -> dict:
    """`night` in a fresh process (its own peak RSS)."""
    done = subprocess.run([sys.executable, __file__, "--child", str(root), str(arrived_by),
                           "1" if index else "0"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--root", default="/tmp/yoyo-history")
    parser.add_argument("--without-index", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, arrived_by, index = args.child
        print(json.dumps(night(Path(root), float(arrived_by), index == "1")))
        return
    root, now = Path(args.root), time.time()
    research = root / "research"
    have = len(os.listdir(research)) if research.is_dir() else 0
    if have < args.history:
        started = time.monotonic()
        generate(root, args.history - have, have, now - DAY)
        print(f"generated {args.history - have} files in {time.monotonic() - started:.0f} s")
    for extra in sorted(research.glob("new-*.md")):
        extra.unlink()
    for stale in (root / "index").glob("*"):
        stale.unlink()
    rows = [("first night with the index (every file read, index built)",
             in_child(root, now))]
    if args.without_index:
        rows.append(("nothing new, without the index (before)", in_child(root, now, False)))
    rows.append(("nothing new, the night after the first (SQLite decides; settled map written)",
                 in_child(root, now)))
    rows.append(("nothing new (settled map)", in_child(root, now)))
    for number in range(args.new):
        (research / f"new-{number:05}.md").write_text(f"Grace Hopper met Alan Turing, {number}.\n")
    rows.append((f"{args.new} new (settled map)", in_child(root, time.time() + 1)))
    rows.append(("nothing new, the night after (the new ones join the settled map)",
                 in_child(root, time.time() + 1)))
    print(f"\n{args.history:,} files of history\n")
    print("| night | s | peak RSS (MiB) | files opened | passed over unopened | new documents |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['seconds']} | {r['peak_rss_mib']} | {r['opened']:,} | "
              f"{r['unchanged']:,} | {r['documents']:,} |")


if __name__ == "__main__":
    main()

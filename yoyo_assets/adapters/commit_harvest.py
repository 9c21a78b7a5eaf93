"""Engineering tuples harvested from git: one SFT tuple per commit that landed on a repository's
default branch during a night (the diff as the prompt, under a fixed instruction; the commit
message as the answer).

Commits are read with the `git` command (plumbing formats, NUL-separated), never by parsing
git's files. "Landed during the night" is the committer date within the night's window, on the
history of the repository's HEAD (a clone's default branch). Skipped, and counted by reason:
merges, bot authors, empty diffs, binary-only diffs, diffs over a size limit, and commits that
an earlier night's file already holds (a commit is harvested once, by its SHA). A night's tuples
are one file, `git-<night>.jsonl`, written atomically; a re-run rewrites it with the same lines.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..shared.atomic import write_atomically

#: The instruction of every harvested tuple: the one the shipped click-commit tuples use.
INSTRUCTION = "Write the commit message for this diff."
#: Authors whose commits are not a person's writing (GitHub apps, dependency bots).
BOT_AUTHOR = re.compile(r"\[bot\]|^(dependabot|renovate|github-actions)\b", re.IGNORECASE)
#: Longest diff harvested, characters (fitting keeps the answer of long ones; runaway
#: generated diffs teach nothing).
DEFAULT_MAX_DIFF_CHARS = 48 * 1024


class HarvestError(RuntimeError):
    """A configured repository cannot be read (not a git repository, git failed)."""


@dataclass
class Harvest:
    """One repository's harvest for a night: tuples (records), and skipped commits by reason."""

    repository: str
    tuples: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def _git(repository: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repository), *args], capture_output=True,
                              text=True, errors="replace", check=True, timeout=300)
    except FileNotFoundError:
        raise HarvestError("the git command is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise HarvestError(f"{repository}: git {' '.join(args[:2])} failed: "
                           f"{exc.stderr.strip()[:300]}") from None
    return done.stdout


def _commits(repository: Path, start: float, end: float) -> list[list[str]]:
    """[sha, parents, author name, author email, committer time] of commits on HEAD's history
    committed in [start, end) (Unix seconds), oldest first."""
    # Git's internal date format ("@<seconds> <offset>"): a bare "@1" is read as a day of the
    # current month, so a harvest from the epoch found nothing on the 1st. The window is
    # checked again below in any case.
    out = _git(repository, "log", "HEAD", "--reverse", f"--since=@{int(start)} +0000",
               f"--until=@{int(end) - 1} +0000", "--format=%H%x00%P%x00%an%x00%ae%x00%ct%x00")
    fields = out.split("\x00")
    rows = [[f.strip() for f in fields[i:i + 5]] for i in range(0, len(fields) - 1, 5)]
    return [r for r in rows if len(r) == 5 and start <= int(r[4]) < end]


def _skip_reason(repository: Path, row: list[str], max_diff_chars: int) -> str | tuple[str, str]:
    """A reason to skip the commit, or its (diff, message)."""
    sha, parents, author, email = row[:4]
    if len(parents.split()) > 1:
        return "merge"
    if BOT_AUTHOR.search(author) or BOT_AUTHOR.search(email.split("@")[0]):
        return "bot author"
    numstat = _git(repository, "show", "--format=", "--numstat", "--no-renames", sha)
    files = [line.split("\t") for line in numstat.splitlines() if line.strip()]
    if not files:
        return "empty diff"
    if all(f[0] == "-" and f[1] == "-" for f in files):
        return "binary-only diff"
    diff = _git(repository, "show", "--format=", "--patch", "--no-color", "--no-ext-diff",
                "--no-renames", sha)
    if len(diff) > max_diff_chars:
        return "diff over the size limit"
    message = _git(repository, "show", "-s", "--format=%B", sha).strip()
    if not message:
        return "empty message"
    return diff, message


def harvest_repository(repository: Path, start: float, end: float, already: set[str],
                       max_diff_chars: int = DEFAULT_MAX_DIFF_CHARS) -> Harvest:
    """The tuples of the commits of `repository` that landed in [start, end), less those whose
    SHA is in `already`.

    Raises:
        HarvestError: the folder is not a git repository, or git fails.
    """
    name = repository.name
    harvest = Harvest(name)
    for row in _commits(repository, start, end):
        if row[0] in already:
            harvest.skipped["already harvested"] += 1
            continue
        outcome = _skip_reason(repository, row, max_diff_chars)
        if isinstance(outcome, str):
            harvest.skipped[outcome] += 1
            continue
        diff, message = outcome
        harvest.tuples.append({
            "messages": [{"role": "system", "content": INSTRUCTION},
                         {"role": "user", "content": diff},
                         {"role": "assistant", "content": message}],
            "source": {"repository": name, "sha": row[0]}})
    return harvest


def harvested_shas(bucket: Path, except_file: Path) -> set[str]:
    """SHAs held by the bucket's harvest files other than `except_file` (this night's)."""
    shas: set[str] = set()
    for path in bucket.glob("git-*.jsonl"):
        if path == except_file:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                shas.add(json.loads(line).get("source", {}).get("sha", ""))
    return shas


def write_night_file(path: Path, tuples: list[dict], arrived: float) -> None:
    """Write the night's tuples atomically (temporary file, rename) with `arrived` (Unix
    seconds, inside the night) as its modification time: a bucket file counts from the night
    of its modification (corpus.scan_bucket), and a harvest runs after its night has ended."""
    write_atomically(path, "".join(json.dumps(t, ensure_ascii=False, sort_keys=True) + "\n"
                                   for t in tuples), mtime=arrived)

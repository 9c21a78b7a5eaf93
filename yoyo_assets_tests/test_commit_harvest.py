"""Engineering tuples harvested from git (commit_harvest.py, the `commit_tuples` asset): a
repository this test creates, with commits dated across two nights, through a real Dagster
instance; and this project's own history."""

import calendar
import json
import os
import subprocess
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from yoyo_assets.adapters.commit_harvest import INSTRUCTION, harvest_repository
from yoyo_assets.adapters.corpus import check_line, scan_bucket
from yoyo_assets.definitions import build_definitions

from .helpers import REPO_ROOT

NIGHT_1, NIGHT_2 = "2026-11-18", "2026-11-19"
HARVEST = AssetKey(["pointsav", "engineering", "commit_tuples"])


def at(night: str, hour: int) -> str:
    """A git date (Unix seconds, UTC) at `hour` o'clock of `night`."""
    return f"@{calendar.timegm(time.strptime(f'{night} {hour}', '%Y-%m-%d %H'))} +0000"


def commit(repo: Path, when: str, message: str, files: dict[str, bytes] | None = None,
           author: str = "Ada Lovelace <ada@example.org>", extra: tuple = ()) -> None:
    for name, content in (files or {}).items():
        (repo / name).write_bytes(content)
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when,
           "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.org"}
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--author", author, "-m", message,
                    *extra], check=True, env=env)


def make_repository(repo: Path) -> None:
    """Night 1: two commits by people, one by a bot, one binary-only, one empty, one merge.
    Night 2: one commit by a person, one with a diff over the size limit."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    commit(repo, at(NIGHT_1, 1), "Add the greeting\n\nSays hello.", {"hello.py": b"print('hi')\n"})
    commit(repo, at(NIGHT_1, 2), "Bump dependency", {"requirements.txt": b"click==8.2\n"},
           author="dependabot[bot] <49699333+dependabot[bot]@users.noreply.github.com>")
    commit(repo, at(NIGHT_1, 3), "Add the logo", {"logo.png": bytes(range(256)) * 4})
    commit(repo, at(NIGHT_1, 4), "Nothing changed", extra=("--allow-empty",))
    env = {**os.environ, "GIT_AUTHOR_DATE": at(NIGHT_1, 6), "GIT_COMMITTER_DATE": at(NIGHT_1, 6)}
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "topic"], check=True)
    commit(repo, at(NIGHT_1, 5), "Say goodbye too", {"bye.py": b"print('bye')\n"})
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "main"], check=True)
    subprocess.run(["git", "-C", str(repo), "merge", "-q", "--no-ff", "-m", "Merge topic",
                    "topic"], check=True, env=env)
    commit(repo, at(NIGHT_2, 1), "Greet by name", {"hello.py": b"import sys\nprint('hi', sys.argv[1])\n"})
    commit(repo, at(NIGHT_2, 2), "Vendor a generated table",
           {"table.py": ("".join(f"ROW_{i} = {i}\n" for i in range(6000))).encode()})


def test_a_nights_commits_become_tuples_once_each(tmp_path, dagster_home):
    repo = tmp_path / "service"
    make_repository(repo)
    root = tmp_path / "data"
    defs = build_definitions(root, gcs_project="yoyo-test", git_repositories=(f"pointsav={repo}",))
    instance = DagsterInstance.get()
    job = defs.resolve_job_def("corpus_nightly")

    def night(partition: str) -> dict:
        result = job.execute_in_process(partition_key=partition, instance=instance)
        assert result.success
        [materialization] = [m for m in result.get_asset_materialization_events()
                             if m.asset_key == HARVEST]
        return {k: v.value for k, v in materialization.materialization.metadata.items()}

    first = night(NIGHT_1)
    assert first["harvested_commits"] == 2  # "Add the greeting", "Say goodbye too"
    assert first["skipped_by_reason"] == {"bot author": 1, "binary-only diff": 1,
                                          "empty diff": 1, "merge": 1}
    bucket = root / "corpus" / "engineering-pointsav"
    lines = (bucket / f"git-{NIGHT_1}.jsonl").read_text().splitlines()
    records = [check_line(line, "sft", 64 * 1024) for line in lines]  # the bucket's schema
    assert [r["messages"][0]["content"] for r in records] == [INSTRUCTION] * 2
    assert records[0]["messages"][2]["content"] == "Add the greeting\n\nSays hello."
    assert "+print('hi')" in records[0]["messages"][1]["content"]

    assert night(NIGHT_1)["harvested_commits"] == 2  # a re-run: the same file, same lines
    assert (bucket / f"git-{NIGHT_1}.jsonl").read_text().splitlines() == lines
    second = night(NIGHT_2)
    assert second["harvested_commits"] == 1
    assert second["skipped_by_reason"] == {"diff over the size limit": 1}

    # The threshold sensor's view: each night's file counts from its own night, once each.
    end_of_night_2 = calendar.timegm(time.strptime(f"{NIGHT_2} 23:59", "%Y-%m-%d %H:%M"))
    scan = scan_bucket(bucket, "sft", end_of_night_2 + 60)
    assert len(scan.tuples) == 3 and scan.invalid == [] and scan.duplicates == 0
    assert len({t.record["source"]["sha"] for t in scan.tuples}) == 3


def test_a_window_from_the_epoch_reaches_a_commit_of_2001(tmp_path):
    """The window's bounds reach git as seconds: a bare "@1" is a day of the current month to
    git, which hid every older commit (and on the 1st of a month, all of them)."""
    repo = tmp_path / "old"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    commit(repo, "@1000000000 +0000", "Add the greeting", {"hello.py": b"print('hi')\n"})
    harvest = harvest_repository(repo, 0, time.time(), already=set())
    assert [t["messages"][-1]["content"] for t in harvest.tuples] == ["Add the greeting"]
    assert harvest_repository(repo, 1000000001, time.time(), already=set()).tuples == []


def test_this_projects_own_history_harvests_valid_tuples():
    harvest = harvest_repository(REPO_ROOT, 0, time.time() + 60, already=set())
    assert harvest.tuples, harvest.skipped
    for record in harvest.tuples:
        check_line(json.dumps(record), "sft", 64 * 1024)
    shas = [r["source"]["sha"] for r in harvest.tuples]
    assert len(set(shas)) == len(shas)
    again = harvest_repository(REPO_ROOT, 0, time.time() + 60, already=set(shas))
    assert again.tuples == [] and again.skipped["already harvested"] == len(shas)

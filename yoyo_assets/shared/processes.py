"""Stopping process groups and recognising a recorded process, through psutil.

A managed server runs in its own process group (its engine core and workers are children that
must go with it). A pid recorded in a file may belong to another program after a reboot; a
process is the recorded one only when its start time (psutil's `create_time`) matches too.
"""

from __future__ import annotations

import os
import signal
import subprocess

import psutil


def group_members(pgid: int) -> list[psutil.Process]:
    """Live members of process group `pgid` (zombies, dead but not yet reaped, left out)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def stop_process_group(pgid: int, grace_s: float, leader: subprocess.Popen | None = None) -> bool:
    """SIGTERM every member of process group `pgid`, wait up to `grace_s` seconds for them to
    exit, SIGKILL those left and wait for them too. `leader`, the group's leader when it is our
    child, is reaped so that it leaves no zombie. Returns True if SIGKILL was needed."""
    members = group_members(pgid)
    for process in members:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(members, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=30)
    if leader is not None:
        leader.wait(timeout=30)
    return bool(alive)


def start_time(pid: int) -> float | None:
    """The start time (Unix seconds) of process `pid`, or None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_running(pid: int, started_at: float | None = None) -> bool:
    """Process `pid` exists (and, given `started_at`, is the one that started then, not a later
    process that reuses the pid)."""
    found = start_time(pid)
    return found is not None and (started_at is None or abs(found - started_at) < 0.01)

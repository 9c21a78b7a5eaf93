"""Named crash points for fault-injection tests.

`crash_point(name)` kills this process with SIGKILL, as a preemption would, when `name` is listed
in YOYO_CRASH_POINTS (comma-separated). Tests that run a night in their own process can instead
register an action for a point with `on_crash_point` (stop a server at that exact moment, say).
Unset and unregistered, a crash point costs one dictionary lookup.
"""

import os
import signal
from collections.abc import Callable

from .settings import crash_points

#: Every crash point placed in the pipeline, in the order a night reaches them (docs/reliability.md).
CRASH_POINTS = (
    "extraction.after_first_document",  # extraction requests still in flight
    "graph.before_request",  # service sink: a batch's mutate request not yet sent
    "graph.before_commit",  # inside a graph write transaction (the embedded sink's, or the service's)
    "graph_service.before_response",  # the service committed a batch, its answer not yet sent
    "graph.after_commit",  # after a batch's transaction committed
    "graph.before_materialization",  # all batches written, materialization not yet recorded
    "identity.before_commit",  # inside the transaction recording the night's resolutions
    "training.after_step",  # between optimizer steps, before any checkpoint
    "training.during_checkpoint_save",  # weights saved; optimizer and trainer state not yet
    "training.after_checkpoint",  # a checkpoint complete
    "registry.before_rename",  # version staged and fsynced, not renamed into v<N>
    "registry.after_rename",  # v<N> in place, its materialization not yet recorded
    "publication.after_first_object",  # one object uploaded, the manifest not yet
)

_actions: dict[str, Callable[[], None]] = {}


def on_crash_point(name: str, action: Callable[[], None] | None) -> None:
    """Run `action` (no arguments) each time this process reaches crash point `name`; None
    removes it. Raises ValueError for a name not in CRASH_POINTS."""
    if name not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if action is None:
        _actions.pop(name, None)
    else:
        _actions[name] = action


def crash_point(name: str) -> None:
    """SIGKILL this process if `name` is in $YOYO_CRASH_POINTS; else run its registered action."""
    if name in crash_points():
        os.kill(os.getpid(), signal.SIGKILL)
    action = _actions.get(name)
    if action is not None:
        action()

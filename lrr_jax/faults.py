"""Fault injection for the reliability tests: kill the process at a named point.

Set `LRR_JAX_FAULT` to a comma-separated list of `POINT:ARG[:ARG][@ACTION]`.
When the run reaches a listed point the action happens at once:

- `in_epoch:LEVEL:EPOCH`: right after the epoch is dispatched, while it runs
  (JAX dispatches asynchronously); level -1 is the warm-up.
- `in_step:LEVEL:EPOCH:STEP`: in a streamed level epoch, after STEP steps
  (`input_pipeline='stream'`); the preemption flag is looked at right after.
- `after_prune:LEVEL`: in `levels.start_level`, the new mask exists, the
  rewind has not happened.
- `during_save:NAME`: in `checkpoints.Store.save`, the checkpoint's data is in
  the temporary directory, not committed.
- `after_save:NAME`: in `checkpoints.Store.save`, right after the commit.
- `nan:LEVEL:EPOCH`: before that epoch the params become NaN, so its loss is
  NaN (the divergence check's input).

Actions: `kill` (default: SIGKILL, no cleanup of any kind), `term` (SIGTERM,
the preemption notice: the handler in `preemption` runs), `int` (SIGINT, as
Ctrl-C sends: the same handler). `nan` has no action.
Examples: `in_epoch:1:2`, `during_save:level_001`, `in_epoch:0:1@term`.

Unset (the normal case) every hook is one dictionary lookup. The variable is
read at each hook, so a test sets it per process; a resumed run without it
runs normally.
"""

from __future__ import annotations

import os
import signal

ENV = "LRR_JAX_FAULT"
POINTS = ("in_epoch", "in_step", "after_prune", "during_save", "after_save", "nan")
_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


def _matches(point: str, args) -> str | None:
    """The action of the first entry of LRR_JAX_FAULT naming `point` with `args`, or None."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    want = ":".join([point, *(str(a) for a in args)])
    for entry in spec.split(","):
        where, _, action = entry.strip().partition("@")
        if where == want:
            return action or "kill"
    return None


def hit(point: str, *args) -> None:
    """Send this process the signal of a matching LRR_JAX_FAULT entry (no-op when unset)."""
    action = _matches(point, args)
    if action is None:
        return
    if action not in _SIGNALS:
        raise ValueError(f"{ENV}: unknown action {action!r} for {point}; "
                         "expected kill, term or int")
    os.kill(os.getpid(), _SIGNALS[action])


def poison(state, level: int, epoch: int, put):
    """`state` with NaN params when LRR_JAX_FAULT lists `nan:<level>:<epoch>`, else `state`.

    `put` places the host copy back on the devices (the backend's `put`).
    """
    if _matches("nan", (level, epoch)) is None:
        return state
    import jax
    import numpy as np

    host = jax.tree.map(np.asarray, jax.device_get(state))
    return put(host.replace(params=jax.tree.map(lambda p: p * np.float32("nan"), host.params)))

"""SIGTERM (the preemption notice of TPU VMs, Slurm, Kubernetes): save, then exit cleanly.

`install()` (called by `main`) makes the first SIGTERM only set a flag. The
the epoch loop (`epochs`) looks at it after every epoch: during a level it writes a mid-level
checkpoint at once (whatever `checkpoint_every_epochs` says) and raises
`Preempted`; during the warm-up it raises without saving (the warm-up is
restarted on resume); after a level's final checkpoint it raises before the
next level starts. `main` prints one line and exits with `EXIT_CODE` (143 =
128 + SIGTERM, the status of a process killed by SIGTERM, so schedulers and
retry loops see an unfinished run). Running the same command again resumes.

A second SIGTERM while the first is being handled kills the process at once
(the default action); checkpoints are atomic, so at worst the epoch in flight
is lost. The flag is checked once per epoch: an epoch must fit in the
scheduler's grace period (30 s on GCE/TPU VMs) for the save to happen; if it
does not, the SIGKILL that follows loses at most the epochs since the last
mid-level save.
"""

from __future__ import annotations

import os
import signal

EXIT_CODE = 143

_requested = False


class Preempted(Exception):
    """A SIGTERM arrived; what could be saved is saved. Run the same command to resume."""


def _handler(signum, frame):
    global _requested
    if _requested:  # the second notice: stop now
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    _requested = True
    # os.write, not print: the handler may interrupt a print to stderr (progress bars),
    # and buffered streams are not reentrant.
    os.write(2, ("SIGTERM received: saving at the end of this epoch, then exiting "
                 f"(status {EXIT_CODE}); send it again to stop at once\n").encode())


def install() -> None:
    """Handle SIGTERM by setting the flag (main thread only)."""
    signal.signal(signal.SIGTERM, _handler)


def requested() -> bool:
    """True once a SIGTERM arrived (at any process of a multi-process run).

    With several processes every one calls this at the same points (they run
    in lockstep), and all get the same answer: a notice that reached one host
    stops all of them at the same epoch, instead of leaving the others waiting
    in a collective for a process that has exited.
    """
    from lrr_jax import distributed

    return distributed.any_process(_requested)


def reset() -> None:
    """Forget a SIGTERM (tests)."""
    global _requested
    _requested = False


def check(where: str) -> None:
    """Raise `Preempted` at a point where nothing unsaved would be lost."""
    if requested():
        stop(where)


def stop(where: str) -> None:
    """Raise `Preempted` (the caller has asked `requested()` and saved what it could)."""
    raise Preempted(f"preempted (SIGTERM) {where}; run the same command to resume")

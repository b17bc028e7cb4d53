"""SIGTERM (the preemption notice of TPU VMs, Slurm, Kubernetes) or Ctrl-C: save, then exit.

`install()` (called by `main`) makes the first SIGTERM or SIGINT (Ctrl-C) only set a flag. The
the epoch loop (`epochs`) looks at it after every epoch: during a level it writes a mid-level
checkpoint at once (whatever `checkpoint_every_epochs` says) and raises
`Preempted`; during the warm-up it raises without saving (the warm-up is
restarted on resume); after a level's final checkpoint it raises before the
next level starts. `main` prints one line and exits with 128 + the signal
(143 for SIGTERM, 130 for Ctrl-C: the status of a process killed by that
signal, so schedulers, shells and retry loops see an unfinished run). Running
the same command again resumes.

A second SIGTERM (or Ctrl-C) while the first is being handled kills the process at once
(the default action); checkpoints are atomic, so at worst the epoch in flight
is lost. The flag is checked once per epoch: an epoch must fit in the
scheduler's grace period (30 s on GCE/TPU VMs) for the save to happen; if it
does not, the SIGKILL that follows loses at most the epochs since the last
mid-level save.
"""

from __future__ import annotations

import os
import signal

EXIT_CODE = 143  # 128 + SIGTERM
EXIT_CODE_SIGINT = 130  # 128 + SIGINT (Ctrl-C)

_requested = False
_signal = signal.SIGTERM  # the first signal that arrived


class Preempted(Exception):
    """A SIGTERM or SIGINT arrived; what could be saved is saved. Run the same command to resume.

    `status` is the exit status main uses: 128 + the signal number.
    """

    def __init__(self, message: str, status: int = EXIT_CODE):
        super().__init__(message)
        self.status = status


def _name(signum) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def _handler(signum, frame):
    global _requested, _signal
    if _requested:  # the second notice: stop now
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    _requested, _signal = True, signal.Signals(signum)
    # os.write, not print: the handler may interrupt a print to stderr (progress bars),
    # and buffered streams are not reentrant.
    os.write(2, (f"{_name(signum)} received: saving at the end of this epoch, then exiting "
                 f"(status {128 + signum}); send it again to stop at once\n").encode())


def install() -> None:
    """Handle SIGTERM and SIGINT by setting the flag (main thread only).

    SIGINT is taken only where it is not ignored (a background job of a
    non-interactive shell starts with SIGINT ignored; it stays so).
    """
    signal.signal(signal.SIGTERM, _handler)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _handler)


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
    """Forget a SIGTERM / SIGINT (tests)."""
    global _requested, _signal
    _requested, _signal = False, signal.SIGTERM


def check(where: str) -> None:
    """Raise `Preempted` at a point where nothing unsaved would be lost."""
    if requested():
        stop(where)


def stop(where: str) -> None:
    """Raise `Preempted` (the caller has asked `requested()` and saved what it could)."""
    sig = _signal if _requested else signal.SIGTERM  # another process's notice: SIGTERM
    raise Preempted(f"preempted ({_name(sig)}) {where}; run the same command to resume",
                    status=128 + int(sig))

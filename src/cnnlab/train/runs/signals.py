"""Stop a run cleanly on SIGINT (Ctrl-C), SIGTERM (preemption, Slurm's time limit), SIGUSR1
(Slurm's ``--signal`` warning) or SIGUSR2 (submitit's ``SUBMITIT_PREEMPT_SIGNAL``): the current
step finishes, a checkpoint is written, then the handler that was installed before takes over
(submitit's requeues the job, which resumes at that step; chained as Lightning does), or, without
one, the process exits with ``128 + signal number``, which launchers and Slurm requeue understand.
A second Ctrl-C stops at once (:class:`SecondInterrupt`, which the loop turns into a message naming
the last checkpoint and exit status 130)."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import NoReturn

__all__ = ["SecondInterrupt", "StopRequested"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class SecondInterrupt(KeyboardInterrupt):
    """Ctrl-C again while the first stop request waits for the step to finish: stop now."""


class StopRequested:
    """Context manager recording the first stop signal; handlers are restored on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise SecondInterrupt
        self.signal = signum
        print(f"\nReceived {signal.Signals(signum).name}: finishing this step, then checkpointing", flush=True)

    def __enter__(self) -> StopRequested:
        for signum in SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread (some launchers): no handler
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal or 0)

    def hand_over(self) -> NoReturn:
        """After the checkpoint: call the handler this one replaced for the received signal (e.g.
        submitit's, which requeues the job and exits); Python's own Ctrl-C handler and the default
        actions are not called. Exits with :attr:`exit_code` if that handler returns."""
        previous = self._previous.get(self.signal)
        if callable(previous) and previous is not signal.default_int_handler:
            signal.signal(self.signal, previous)
            previous(self.signal, None)
        raise SystemExit(self.exit_code)

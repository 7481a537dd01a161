"""Stop a run cleanly on SIGINT (Ctrl-C), SIGTERM (preemption, Slurm's time limit) or SIGUSR1
(Slurm's ``--signal`` warning): the current step finishes, a checkpoint is written, and the
process exits with ``128 + signal number``, which launchers and Slurm requeue understand."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType

__all__ = ["StopRequested"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequested:
    """Context manager recording the first stop signal; handlers are restored on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
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

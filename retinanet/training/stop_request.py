"""Stopping training cleanly on Ctrl-C, SIGTERM or SIGHUP: a flag honoured between iterations."""
from __future__ import annotations

import signal
from contextlib import contextmanager

from retinanet.stop_signals import STOP_SIGNALS, Stopped, handled


class StopRequest:
    """Ctrl-C / SIGTERM / SIGHUP set a flag that the loop honours between iterations (so the weights saved are
    never half updated). torchrun forwards the terminal's Ctrl-C, so a process may see two; a third stops at
    once. An ignored SIGHUP (`nohup`) stays ignored."""

    def __init__(self):
        self.count = 0
        self.signum = signal.SIGINT  # the first signal received

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handle(self, signum, frame):
        self.count += 1
        if self.count == 1:
            self.signum = signum
        if self.count >= 3:
            raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    @contextmanager
    def installed(self):
        taken = [s for s in STOP_SIGNALS if s == signal.SIGINT or signal.getsignal(s) is not signal.SIG_IGN]
        with handled(self._handle, taken):
            yield self

"""Stopping training cleanly on Ctrl-C or SIGTERM: a flag honoured between iterations."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopRequest:
    """Ctrl-C / SIGTERM set a flag that the loop honours between iterations (so the weights saved are never half
    updated). torchrun forwards the terminal's Ctrl-C, so a process may see two; a third stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.count = 0

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handle(self, signum, frame):
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

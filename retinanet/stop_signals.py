"""The signals that ask rdet to stop: Ctrl-C (SIGINT), SIGTERM (`timeout`, `docker stop`, schedulers; Slurm and
systemd send it to every process of the job) and SIGHUP (a closed terminal, sent to the whole process group).
The main process decides how to stop (training saves first); data-loading workers leave it to it."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(BaseException):
    """A stop signal other than Ctrl-C, raised where Ctrl-C would raise KeyboardInterrupt. Not a subclass of it:
    typer turns a KeyboardInterrupt into a silent exit 130, and this one says which signal it was."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def leave_stopping_to_the_main_process() -> None:
    """In a DataLoader worker: a stop signal sent to the whole group must not kill it (torch's own SIGTERM
    handler would), or the main process meets 'DataLoader worker is killed by signal' in place of its clean
    stop. The main process ends its workers when it is done."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def handled(handler, signums: Iterable[int]) -> Iterator[None]:
    """`handler` for `signums` within the block, the earlier handlers restored after; nothing off the main
    thread, where Python cannot install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, earlier in previous.items():
            signal.signal(s, earlier)

"""Progress of a transfer: nothing (--quiet), plain lines for pipes and logs, or a rich bar on a terminal.

Progress always goes to stderr, so that stdout stays for results (--json).
"""
from __future__ import annotations

import sys
import time

def human(n: int | None) -> str:
    """A byte count for people: 1.5 MB."""
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


class TransferProgress:
    """Progress of one transfer. This base reports nothing (--quiet); subclasses write to stderr, never stdout."""

    def start(self, label: str, total: int | None, done: int) -> None:
        """A transfer (re)starts: `total` bytes in all when known, `done` of them already on disk."""

    def update(self, done: int) -> None:
        """`done` bytes are on disk now."""

    def note(self, message: str) -> None:
        """Something a person may want to know: a retry, a wait for another process."""

    def warn(self, message: str) -> None:
        """Something a person must know (an insecure source, a wait for another process): printed even when
        quiet, since it may explain a delay or a risk."""
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def finish(self, ok: bool) -> None:
        """The transfer is over, successfully or not. Called once."""


class LineProgress(TransferProgress):
    """Plain lines for logs and pipes: one at the start, one every 10%, one at the end."""

    def __init__(self, stream=None):
        self.stream = stream
        self.label, self.total, self.done, self.tenth, self.began = "", None, 0, 0, 0.0

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def start(self, label, total, done):
        if not self.label:
            self.began = time.monotonic()
        if done:
            self._print(f"{label}: resuming at {human(done)} of {human(total)}")
        else:
            again = "starting over" if self.label else "fetching"
            self._print(f"{label}: {again} {human(total)}")
        self.label, self.total, self.done = label, total, done
        self.tenth = self._tenth(done)

    def _tenth(self, done: int) -> int:
        return done * 10 // self.total if self.total else 0

    def update(self, done):
        self.done = done
        tenth = self._tenth(done)
        if tenth > self.tenth and tenth < 10:
            self._print(f"{self.label}: {tenth * 10}% ({human(done)} of {human(self.total)})")
        self.tenth = tenth

    def note(self, message):
        self._print(message)

    def finish(self, ok):
        if ok and self.label:
            seconds = max(time.monotonic() - self.began, 1e-6)
            self._print(f"{self.label}: done, {human(self.done)} in {seconds:.1f} s "
                        f"({human(int(self.done / seconds))}/s)")


class BarProgress(TransferProgress):
    """A rich progress bar on stderr (bytes, speed, ETA) for terminals."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
        self.task = None

    def start(self, label, total, done):
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(label, total=total, completed=done)
        else:
            self.progress.reset(self.task, total=total, completed=done)

    def update(self, done):
        self.progress.update(self.task, completed=done)

    def note(self, message):
        self.progress.console.print(message, highlight=False, markup=False)

    def warn(self, message):
        self.note(f"warning: {message}")

    def finish(self, ok):
        if self.task is not None:
            self.progress.stop()


def make_progress(quiet: bool = False) -> TransferProgress:
    """Nothing when quiet, a progress bar on a terminal, plain lines otherwise."""
    if quiet:
        return TransferProgress()
    return BarProgress() if sys.stderr.isatty() else LineProgress()


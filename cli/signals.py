"""SIGTERM (what `timeout`, `docker stop` and cluster schedulers send) and SIGHUP (a closed terminal or SSH
session) stop rdet as Ctrl-C does, not by killing it on the spot: every clean-up that Ctrl-C runs runs for them
too (a download keeps its .part and releases its lock, an atomic write removes its temporary file, training
saves a resumable checkpoint). A signal that is ignored (`nohup` ignores SIGHUP) stays ignored."""
from __future__ import annotations

import signal

from retinanet.stop_signals import STOP_SIGNALS, Stopped


def _raise(signum, frame):
    raise Stopped(signum)


def stop_like_ctrl_c() -> None:
    """Make the stop signals (beyond SIGINT, which Python already turns into KeyboardInterrupt) raise Stopped."""
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT and signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _raise)


def exit_code(stop: BaseException) -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + getattr(stop, "signum", signal.SIGINT)


def said(stop: BaseException) -> str:
    signum = getattr(stop, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"

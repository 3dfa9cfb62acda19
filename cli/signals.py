"""SIGTERM (what `timeout`, `docker stop` and cluster schedulers send) and SIGHUP (a closed terminal or SSH
session) stop rdet as Ctrl-C does, not by killing it on the spot: every clean-up that Ctrl-C runs runs for them
too (a download keeps its .part and releases its lock, an atomic write removes its temporary file, training
saves a resumable checkpoint). A signal that is ignored (`nohup` ignores SIGHUP) stays ignored."""
from __future__ import annotations

import signal

from retinanet.stop_signals import STOP_SIGNALS, Stopped, handled


def _raise(signum, frame):
    raise Stopped(signum)


def stopping_like_ctrl_c():
    """A with block in which the stop signals raise Stopped, Ctrl-C too: as KeyboardInterrupt typer would turn it
    into a silent exit 130, and the user would not be told that the run was interrupted. Signals someone else
    handles or ignores are left alone; the handlers before are restored after (rdet may run inside another
    program's process)."""
    ours = [s for s in STOP_SIGNALS
            if signal.getsignal(s) is (signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)]
    return handled(_raise, ours)


def exit_code(stop: BaseException) -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + getattr(stop, "signum", signal.SIGINT)


def said(stop: BaseException) -> str:
    signum = getattr(stop, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"

"""Ctrl-C and SIGTERM as a clean stop: every command exits as interrupted (status 130), one line, no traceback.

A signal can land anywhere, also where Python cannot raise it cleanly: inside a compiled (numba) function,
whose KeyboardInterrupt then comes back as a chain of SystemErrors, or in a destructor or a compiler callback
that swallows it (and a later error follows). So the handler also records the request: the CLI treats any
error after it as the interrupt, and the stream loops check it before every frame.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading


class StopSignals:
    """SIGINT and SIGTERM (systemd, docker stop) raise KeyboardInterrupt and set `requested`."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        self.requested = True
        raise KeyboardInterrupt

    def _unraisable(self, info):
        """Where Python swallows the KeyboardInterrupt (and would print its traceback), stay quiet: the
        request is recorded and acted on."""
        if not isinstance(info.exc_value, KeyboardInterrupt):
            self._previous_hook(info)

    @contextlib.contextmanager
    def installed(self):
        """Install the handlers for the block (only the main thread can: elsewhere, a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        try:
            yield self
        finally:
            sys.unraisablehook = self._previous_hook
            for s, h in previous.items():
                signal.signal(s, h)


def is_interrupt(e: BaseException, stop: StopSignals | None = None) -> bool:
    """Whether `e` is, or follows, Ctrl-C: a KeyboardInterrupt anywhere in its chain of causes, or any error
    once `stop` has seen the signal."""
    if stop is not None and stop.requested:
        return True
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False

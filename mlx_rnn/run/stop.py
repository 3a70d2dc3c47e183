"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (``kill``, ``docker stop``, systemd, batch
schedulers) are handled alike.

While an epoch trains, :class:`StopFlag` turns the first signal into a flag the batch loop polls,
so the step finishes, resumable state is saved and the run exits 130 (docs/design.md, Exit
codes), naming the signal and the ``--resume`` command; a second signal interrupts at once.
Outside training (planning, reading data, evaluation), SIGTERM raises ``KeyboardInterrupt`` as
Ctrl-C does (:func:`terminate_as_interrupt`), so it too ends in one line and exit 130. While a
framework and its native extension are imported, both signals wait (:func:`deferred_signals`):
an exception raised inside an extension's initialisation would break it (an ImportError, a
silent fall-back, or an abort) instead of stopping the run.
"""

from __future__ import annotations

from contextlib import contextmanager
import signal
import sys
import threading


class StopFlag:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, ``docker stop``, systemd, batch schedulers) set a
    flag the batch loop polls; a second signal interrupts at once. ``cause`` names the first."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.set, self.cause = False, ""
        self._old = {}

    def __enter__(self):
        self._old = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def _handler(self, signum, frame):
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.set:
            raise KeyboardInterrupt(name)
        self.set, self.cause = True, name
        print(f"\n{name}: finishing this step and saving resumable state ({name} again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    def __call__(self) -> bool:
        return self.set


def _terminate(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def terminate_as_interrupt(handler=_terminate):
    """Install ``handler`` for SIGTERM (default: raise ``KeyboardInterrupt("SIGTERM")``) in the
    main thread (elsewhere, or for ``handler`` None, nothing is done); returns the handler it
    replaced, to put back the same way."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


@contextmanager
def sigterm_interrupts():
    """:func:`terminate_as_interrupt` for the duration, the handler before put back after (a
    tool's ``main`` may run inside another program)."""
    old = terminate_as_interrupt()
    try:
        yield
    finally:
        terminate_as_interrupt(old)


@contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM for the duration (in the main thread; elsewhere a no-op), then
    deliver the first one held to the handlers in place before, as if it arrived just now.
    For imports of frameworks and native extensions, which must not be interrupted halfway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in StopFlag.SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])

"""SIGINT and SIGTERM during a search: end the process cleanly, with status 130 / 143.

Lightning catches KeyboardInterrupt inside `trainer.fit` and turns it into `sys.exit(1)` (and ignores
SIGINT from then on), so a plain Ctrl-C would leave the Optuna trial RUNNING and its MLflow run FAILED.
Instead, while a search runs, our own handlers take both signals: they note the signal and raise
`Interrupted` (a BaseException that is not a KeyboardInterrupt, so Lightning tears down and re-raises
it) only where raising is safe: inside training and while waiting. Elsewhere (storage and MLflow
writes) the signal is only noted and `check()` raises at the next safe point. A second signal while
the first is being handled is noted and otherwise ignored, so the clean-up finishes.

    with SignalGuard() as guard:
        ...
        with guard.raising():      # training, sleeping
            fit(...)
        guard.check()              # between steps
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM; exit status 128 + signal number (130, 143)."""

    def __init__(self, signum: int, detail: str = ""):
        self.signum = signum
        self.detail = detail
        super().__init__(self.message)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        return f"interrupted by {self.name}" + (f": {self.detail}" if self.detail else "")

    def __str__(self) -> str:
        return self.message


class SignalGuard:
    """Installs the handlers on enter (main thread only) and restores the previous ones on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raise_ok = 0
        self._raised = False
        self._old: dict[int, object] = {}

    # ---- handlers ----------------------------------------------------------------------------
    def _handler(self, signum, frame) -> None:
        if self.signum is not None:
            return  # a second signal while the first is handled: let the clean-up finish
        self.signum = signum
        if self._raise_ok > 0:
            self._raised = True
            raise Interrupted(signum)

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    # ---- use -----------------------------------------------------------------------------------
    @property
    def received(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise Interrupted if a signal arrived (a safe point)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """A region where the handler raises at once (training, waiting). A SystemExit coming out of
        the region after a signal (Lightning's own handling) becomes Interrupted too."""
        self.check()
        self._raise_ok += 1
        try:
            yield
        except SystemExit:
            if self.signum is not None:
                raise Interrupted(self.signum) from None
            raise
        finally:
            self._raise_ok -= 1


class NoGuard(SignalGuard):
    """No handlers (library use, tests in threads): check() and raising() still work."""

    def __enter__(self) -> "NoGuard":
        return self

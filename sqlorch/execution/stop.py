"""A build's stop request: pulled by the CLI's main thread on Ctrl-C or SIGTERM while the
build runs on another thread, so that signals never land in the middle of a statement or
of a transaction's bookkeeping."""

from __future__ import annotations

import threading

from sqlorch.adapters.base import Adapter


class StopRequest:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._adapter: Adapter | None = None
        self.total = 0  # nodes selected, once the project is loaded

    def attach(self, adapter: Adapter) -> None:
        """The build's adapter: stopping interrupts its statements and refuses new ones."""
        with self._lock:
            self._adapter = adapter
            stopped = self._event.is_set()
        if stopped:
            adapter.interrupts.interrupt()

    def stop(self) -> None:
        with self._lock:
            self._event.set()
            adapter = self._adapter
        if adapter is not None:
            adapter.interrupts.interrupt()

    @property
    def connected(self) -> bool:
        """Whether the build has a connection yet: before it, stopping needs no clean-up."""
        with self._lock:
            return self._adapter is not None

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

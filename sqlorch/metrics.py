"""Prometheus metrics of ``sqlorch run`` (``--metrics-port``), served on loopback only:
the metrics name every model, which is not for the whole network to read; put a proxy or
a sidecar in front to expose them.

Per model: ``sqlorch_model_lag_seconds``, ``sqlorch_model_freshness_target_seconds``,
``sqlorch_model_build_seconds`` (the last build), ``sqlorch_model_rows_written_total``,
``sqlorch_model_failures_total``, ``sqlorch_model_consecutive_failures``,
``sqlorch_model_suspended``. Per process: ``sqlorch_ticks_total``, ``sqlorch_builds_total``,
``sqlorch_tick_seconds`` (the last tick, wall clock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if TYPE_CHECKING:
    from sqlorch.api_run import Tick


class Metrics:
    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry()  # ours alone: no process or platform collectors mixed in
        model = ["model"]
        self.lag = Gauge(
            "sqlorch_model_lag_seconds", "Seconds the model lags its sources.", model, registry=self.registry
        )
        self.target = Gauge(
            "sqlorch_model_freshness_target_seconds", "The model's freshness target.", model, registry=self.registry
        )
        self.build = Gauge(
            "sqlorch_model_build_seconds", "Seconds of the model's last build.", model, registry=self.registry
        )
        self.rows = Counter("sqlorch_model_rows_written", "Rows written to the model.", model, registry=self.registry)
        self.failures = Counter("sqlorch_model_failures", "Failed builds of the model.", model, registry=self.registry)
        self.consecutive = Gauge(
            "sqlorch_model_consecutive_failures", "Failures in a row.", model, registry=self.registry
        )
        self.suspended = Gauge("sqlorch_model_suspended", "1 when suspended.", model, registry=self.registry)
        self.ticks = Counter("sqlorch_ticks", "Ticks run.", registry=self.registry)
        self.builds = Counter("sqlorch_builds", "Ticks that built something.", registry=self.registry)
        self.tick_seconds = Gauge("sqlorch_tick_seconds", "Seconds of the last tick.", registry=self.registry)
        self.server, self.thread = start_http_server(port, addr=address, registry=self.registry)

    def update(self, tick: Tick) -> None:
        self.ticks.inc()
        self.tick_seconds.set(tick.seconds)
        for name, status in tick.statuses.items():
            self.lag.labels(name).set(status.lag_seconds)
            if status.freshness is not None:
                self.target.labels(name).set(status.freshness)
            self.consecutive.labels(name).set(status.consecutive_failures)
            self.suspended.labels(name).set(1 if status.suspended else 0)
        if tick.result is None:
            return
        self.builds.inc()
        for item in tick.result.results:
            if item.status == "error":
                self.failures.labels(item.model).inc()
                self.consecutive.labels(item.model).inc()
            elif item.status == "success":
                self.consecutive.labels(item.model).set(0)
                self.lag.labels(item.model).set(0)
                if item.action != "skip":
                    self.build.labels(item.model).set(item.seconds)
                self.rows.labels(item.model).inc(item.rows or 0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

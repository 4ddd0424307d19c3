"""Prometheus metrics for ``GET /metrics``: a small in-process registry and text writer.

Why not ``prometheus_client``: packyd needs counters, one gauge and two histograms, all
updated from a single trio thread and rendered on demand. The exposition format (version
0.0.4) is a few lines of text; writing it takes less code than adapting the library's
process-global registry, multiprocess mode and thread locks to a per-daemon object, and it
keeps the dependency set (and the Debian package) small.

Labels are metadata only: provider names, upstream model names, statuses, error types. Label
values are escaped, and each metric keeps at most :data:`MAX_SERIES` label sets so that a
client sending arbitrary model names cannot grow memory without bound (the excess is folded
into ``model="other"``).
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Iterable, Sequence, TypeVar

__all__ = ["Registry", "Counter", "Gauge", "Histogram", "PackydMetrics", "MAX_SERIES", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_SERIES = 500

#: Seconds; upstream answers range from sub-second to many minutes of reasoning.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.label_names = tuple(labels)

    def _key(self, values: Sequence[str], existing: dict) -> tuple[str, ...]:  # type: ignore[type-arg]
        key = tuple(str(value) for value in values)
        if len(key) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}")
        if key not in existing and len(existing) >= MAX_SERIES:
            key = tuple("other" for _ in key)
        return key

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels, self._values)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(tuple(labels), 0.0)

    def render(self) -> list[str]:
        lines = self.header()
        for key, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, key)} {_number(value)}")
        return lines


class Gauge(_Metric):
    """A gauge whose values are set directly or computed at render time by ``source``."""

    kind = "gauge"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = (),
                 source: Callable[[], Iterable[tuple[Sequence[str], float]]] | None = None) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._source = source

    def set(self, *labels: str, value: float) -> None:
        self._values[self._key(labels, self._values)] = value

    def add(self, *labels: str, amount: float) -> None:
        key = self._key(labels, self._values)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(tuple(labels), 0.0)

    def render(self) -> list[str]:
        values = dict(self._values)
        if self._source is not None:
            for labels, value in self._source():
                values[tuple(labels)] = value
        lines = self.header()
        for key, value in sorted(values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, key)} {_number(value)}")
        return lines


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, doc: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, doc, labels)
        self.buckets = tuple(sorted(buckets))
        #: per label set: hits per bucket (non-cumulative), hits above the last bound, sum, count
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, *labels: str, value: float) -> None:
        key = self._key(labels, self._series)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0.0] * (len(self.buckets) + 3)
        series[bisect.bisect_left(self.buckets, value)] += 1  # index len(buckets): above every bound
        series[-2] += value
        series[-1] += 1

    def count(self, *labels: str) -> int:
        series = self._series.get(tuple(labels))
        return int(series[-1]) if series else 0

    def render(self) -> list[str]:
        lines = self.header()
        for key, series in sorted(self._series.items()):
            running = 0.0
            for bound, hits in zip(self.buckets, series):
                running += hits
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(running)}")
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels(self.label_names, key, inf)} {_number(series[-1])}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_number(series[-1])}")
        return lines


_M = TypeVar("_M", bound="_Metric")


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _M) -> _M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class PackydMetrics:
    """The metrics packyd exports; routing and the ops routes update them."""

    def __init__(self, *, circuit_source: Callable[[], Iterable[tuple[Sequence[str], float]]] | None = None,
                 up_since: float | None = None) -> None:
        self.registry = Registry()
        add = self.registry.add
        self.requests = add(Counter(
            "packyd_requests_total",
            "Messages requests that reached a provider, by provider, upstream model and HTTP status "
            "(a stream that ended in an error event counts as status=\"stream_error\").",
            ("provider", "model", "status")))
        self.ttfb = add(Histogram(
            "packyd_upstream_first_byte_seconds",
            "Time from sending an upstream attempt to its first content, by provider.", ("provider",)))
        self.duration = add(Histogram(
            "packyd_upstream_duration_seconds",
            "Time from the start of routing to the end of the answer, by provider and outcome.",
            ("provider", "outcome")))
        self.active = add(Gauge("packyd_active_streams", "Answers currently being streamed to clients, by provider.",
                                ("provider",)))
        self.retries = add(Counter("packyd_retries_total",
                                   "Upstream attempts repeated before the first byte, by provider and error type.",
                                   ("provider", "reason")))
        self.fallbacks = add(Counter("packyd_fallbacks_total",
                                     "Requests served by a later provider in routing.fallback than the first one "
                                     "tried, by the provider that failed or was skipped and the one that served.",
                                     ("from", "to")))
        self.upstream_errors = add(Counter("packyd_upstream_errors_total",
                                           "Upstream failures, by provider, error type and phase "
                                           "(before_first_byte or mid_stream).", ("provider", "type", "phase")))
        self.circuit_state = add(Gauge("packyd_circuit_state",
                                       "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
                                       ("provider",), source=circuit_source))
        self.circuit_openings = add(Counter("packyd_circuit_openings_total",
                                            "Times a provider's circuit opened.", ("provider",)))
        self.provider_disabled = add(Gauge("packyd_provider_runtime_disabled",
                                           "1 while a provider is disabled with the runtime switch.", ("provider",)))
        # Failed reloads show in packyd_config_last_reload_successful (routing.attach adds it):
        # the daemon reports a failure only by keeping the old snapshot, which no hook sees.
        self.reloads = add(Counter("packyd_reloads_total", "Configuration reloads that swapped in a new "
                                   "configuration, by result.", ("result",)))
        self.config_generation = add(Gauge("packyd_config_generation", "Generation of the running configuration."))
        self.reloads.inc("ok", amount=0)

    def render(self) -> str:
        return self.registry.render()

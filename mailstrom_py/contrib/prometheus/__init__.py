"""The metrics as a prometheus_client collector (the ``[prometheus]`` extra).

    import prometheus_client
    from mailstrom_py.contrib.prometheus import MetricsCollector

    prometheus_client.REGISTRY.register(MetricsCollector(mailer.metrics))

:meth:`~mailstrom_py.events.Metrics.text` needs no extra; this module is for
applications that already expose a prometheus_client registry.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ...events import Metrics

__all__ = ["MetricsCollector"]


class MetricsCollector(Collector):
    """Yields the values of ``metrics`` each time the registry is collected."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        """The metric families, with their samples now."""
        families: dict[str, Metric] = {}
        for sample in self._metrics.samples():
            family, kind, help = self._metrics.describe(sample.name)
            metric = families.get(family)
            if metric is None:
                metric = families[family] = Metric(family, help, kind)
            metric.add_sample(sample.name, dict(sample.labels), sample.value)
        return list(families.values())

"""A Prometheus endpoint over a running meter (`fastmeter export`). Needs `fastmeter[export]` (prometheus-client),
imported only when an exporter is made."""

from fastmeter.export.metrics import MeterCollector
from fastmeter.export.server import Exporter

__all__ = ["Exporter", "MeterCollector"]

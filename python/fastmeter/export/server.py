"""The HTTP endpoint: prometheus-client's server on its own registry, serving one `MeterCollector` at /metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.export.metrics import MeterCollector
from fastmeter.validity import Validity


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as [::1]:PORT) -> (host, port); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT; use e.g. 127.0.0.1:9464 (port 0 picks a free one)")
    return host, int(port)


class Exporter:
    """Serves `meter` on http://host:port/metrics from a background thread until `close()`."""

    def __init__(self, meter: Any, judge: Callable[[], Validity], host: str, port: int) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError as e:
            raise ConfigError(f"the exporter needs prometheus-client: pip install 'fastmeter[export]' ({e})") from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MeterCollector(meter, judge))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pick another address or port") from None
        self.host, self.port = host, int(self._server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

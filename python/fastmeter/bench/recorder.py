"""A Meter whose samples stream to a trace file from a background thread while a benchmark runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastmeter.io.stream import TraceWriter
from fastmeter.meter import Meter

FLUSH_INTERVAL_S = 0.5


class StreamingRecorder:
    """Owns the flush thread; `close()` stops the meter, writes the rest and finishes the file."""

    def __init__(self, meter: Meter, path: Path, metadata: dict[str, Any]) -> None:
        self.meter = meter
        self.writer = TraceWriter(path, metadata)
        self._written = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fastmeter-flush", daemon=True)

    def start(self) -> None:
        self.meter.start()
        self._thread.start()

    def _flush(self) -> None:
        with self._lock:
            n = self.meter.sample_count()
            self.writer.write(self.meter.samples(self._written, n))
            self._written = n

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self._flush()

    def close(self, final_metadata: dict[str, Any]) -> Path:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.meter.stop()
        self._flush()
        return self.writer.close({"sampler_stats": self.meter.stats(), **final_metadata})

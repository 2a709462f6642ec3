"""Trace files: streamed Arrow IPC while recording, a complete Arrow or Parquet file at the end."""

from fastmeter.io.read import Trace, TraceBatches, open_trace, read_trace
from fastmeter.io.stream import TraceWriter

__all__ = ["Trace", "TraceBatches", "TraceWriter", "open_trace", "read_trace"]

"""Streaming writer: every flush appends one record batch to an Arrow IPC stream, so a killed process loses at most
the batch since the last flush. `close()` rewrites the stream as the final file, with the metadata known only at
the end (statistics, exit code, idle baseline), atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from fastmeter.errors import ConfigError
from fastmeter.io.schema import FORMAT_VERSION, METADATA_KEY, SUFFIXES
from fastmeter.meter import SAMPLES_SCHEMA


def _schema_with(metadata: dict[str, Any]) -> pa.Schema:
    meta = {"format_version": FORMAT_VERSION, **metadata}
    return SAMPLES_SCHEMA.with_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})


def check_output_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise ConfigError(f"output {p} must end in one of {', '.join(SUFFIXES)} (Arrow IPC or Parquet)")
    if not p.parent.exists():
        raise ConfigError(f"output directory {p.parent} does not exist; create it first")
    if p.is_dir():
        raise ConfigError(f"output {p} is a directory; give a file name")
    return p


class TraceWriter:
    """Write samples as they arrive. `.arrow` outputs stream into the file itself; `.parquet` outputs stream into
    `<name>.partial.arrow` beside it (Parquet cannot be read back half-written), removed once the Parquet is done."""

    def __init__(self, path: str | os.PathLike[str], metadata: dict[str, Any]) -> None:
        self.path = check_output_path(path)
        self.stream_path = self.path if self.path.suffix == ".arrow" else self.path.with_suffix(".partial.arrow")
        self._metadata = dict(metadata)
        self._sink = pa.OSFile(str(self.stream_path), "wb")
        self._writer = ipc.new_stream(self._sink, _schema_with(self._metadata))
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Append samples and push them to the OS, so they survive a SIGKILL of this process."""
        if table.num_rows == 0:
            return
        # Every batch carries the full channel dictionary, so each one reads on its own.
        for batch in table.to_batches():
            self._writer.write_batch(batch)
        self._sink.flush()
        self.rows += table.num_rows

    def close(self, final_metadata: dict[str, Any]) -> Path:
        """Finish the stream and replace it by the complete file with all metadata."""
        self._writer.close()
        self._sink.close()
        with pa.OSFile(str(self.stream_path)) as f:
            table = ipc.open_stream(f).read_all()
        meta = {**self._metadata, **final_metadata, "complete": True}
        table = table.replace_schema_metadata(_schema_with(meta).metadata)
        tmp = self.path.with_name(self.path.name + ".tmp")
        if self.path.suffix == ".parquet":
            pq.write_table(table, str(tmp))
        else:
            with pa.OSFile(str(tmp), "wb") as f, ipc.new_file(f, table.schema) as w:
                w.write_table(table)
        os.replace(tmp, self.path)
        if self.stream_path != self.path:
            self.stream_path.unlink(missing_ok=True)
        return self.path

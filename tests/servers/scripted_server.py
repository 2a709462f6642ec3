"""A standalone OpenAI-compatible server process with scripted misbehaviour, for launch tests: fastmeter starts it
as it would start vLLM (a command in [server].launch), so the real process, group, log and signal paths run.

    python scripted_server.py --port P [--ready-after S] [--mode MODE] [--exit-after N] [--worker]

Modes: ok (ready after --ready-after s; /health answers 503 before), never-ready (503 forever), crash-at-start (logs
an error and exits 7 at once), ignore-term (ignores SIGTERM: only SIGKILL stops it). --exit-after N exits with
code 3 right after the Nth completion request is answered (a server dying mid-run). --worker forks a child that
sleeps in the same process group (an engine worker) and writes its pid to stdout; --touch-on-request FILE creates FILE
when a completion request arrives (so a test can wait for the load to be running). Completions stream `max_tokens`
tokens, --token-gap-ms apart (default 2), then a usage chunk and [DONE]. Only the standard library: it runs under
any interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "0.0.1-scripted"
TOKEN_GAP_S = 0.002


def log(text: str) -> None:
    print(f"scripted-server[{os.getpid()}]: {text}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--mode", choices=("ok", "never-ready", "crash-at-start", "ignore-term"), default="ok")
    p.add_argument("--exit-after", type=int, default=0)
    p.add_argument("--worker", action="store_true")
    p.add_argument("--token-gap-ms", type=float, default=TOKEN_GAP_S * 1000)
    p.add_argument("--touch-on-request", default=None)  # a file created when the first completion request arrives
    args = p.parse_args()
    if args.mode == "crash-at-start":
        print("scripted-server: fatal: cannot allocate the KV cache (scripted crash)", file=sys.stderr, flush=True)
        sys.exit(7)
    if args.mode == "ignore-term":
        signal.signal(signal.SIGTERM, lambda s, f: log("got SIGTERM and ignores it"))
    if args.worker:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # an engine worker that only dies with its group's SIGKILL
            while True:
                time.sleep(60)
        log(f"worker pid {pid}")
    ready_at = time.monotonic() + args.ready_after
    served = {"n": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *a: object) -> None:
            log(fmt % a)

        def _json(self, status: int, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            ready = args.mode != "never-ready" and time.monotonic() >= ready_at
            if self.path in ("/health", "/v1/models"):
                if ready:
                    self._json(200, {"object": "list", "data": [{"id": "tiny"}]})
                else:
                    self._json(503, {"error": "loading"})
            elif self.path == "/version":
                self._json(200, {"version": VERSION})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if args.touch_on_request:
                open(args.touch_on_request, "a").close()
            n = int(body.get("max_tokens", 4))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                finish = "length" if i == n - 1 else None
                self._chunk({"choices": [{"index": 0, "text": f" t{i}", "finish_reason": finish}]})
                time.sleep(args.token_gap_ms / 1000)
            self._chunk({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n}})
            self._chunk(None)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            with lock:
                served["n"] += 1
                if args.exit_after and served["n"] >= args.exit_after:
                    log(f"fatal: scripted exit after {served['n']} requests")
                    os._exit(3)

        def _chunk(self, obj: object) -> None:
            """One SSE event in one HTTP chunk; None is the end marker [DONE]."""
            data = b"data: " + (b"[DONE]" if obj is None else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    log(f"listening on 127.0.0.1:{args.port}, mode {args.mode}")
    server.serve_forever()


if __name__ == "__main__":
    main()

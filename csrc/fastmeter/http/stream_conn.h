// One connection of StreamClient: private to stream_client.cpp (the queue, the loop, deadlines) and
// stream_client_io.cpp (what happens on one socket), which both work on it.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "fastmeter/http/stream_client.h"

namespace fastmeter::http {

struct StreamClient::Conn {
  int fd = -1;
  bool connecting = true;
  bool reused = false;     // it served a response before: a close before any byte is a stale keep-alive
  bool busy = false;       // a request is on it (answered or still arriving)
  bool answered = false;   // its Result went out; the rest of the body is drained
  bool got_bytes = false;
  bool want_out = false;   // registered for EPOLLOUT
  std::string out;         // the request, kept whole for a retry on a stale connection
  size_t out_off = 0;
  int64_t timeout_ns = 0;
  int64_t deadline_ns = INT64_MAX;  // the request's timeout, then the end of the drain grace
  std::unique_ptr<ResponseParser> parser;
  Result result;
};

inline std::string errno_text(int err) { return std::string(std::strerror(err)); }

}  // namespace fastmeter::http

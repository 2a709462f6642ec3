// The native transport's HTTP/1.1 + SSE parser on split, merged and oversized inputs.
#include <string>
#include <vector>

#include "check.h"
#include "fastmeter/http/response_parser.h"

using fastmeter::http::ErrorKind;
using fastmeter::http::ParseError;
using fastmeter::http::ResponseParser;
using fastmeter::http::StreamLimits;

namespace {

const std::string kHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string chunk(const std::string& s) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", s.size());
  return size + s + "\r\n";
}

// Feeds `wire` in pieces of `step` bytes, piece i stamped i; returns the parser.
ResponseParser feed_in(const std::string& wire, size_t step, StreamLimits limits = {}) {
  ResponseParser p(limits);
  int64_t t = 0;
  for (size_t i = 0; i < wire.size(); i += step, ++t) {
    const size_t n = std::min(step, wire.size() - i);
    CHECK(p.feed(wire.data() + i, n, t) == n || p.complete());
  }
  return p;
}

void events_survive_any_split() {
  const std::string body = chunk("data: {\"a\":1}\n\n") + chunk(": ping\r\n") + chunk("data:x\r\ndata: y\r\n\r\n") +
                           chunk("event: e\rdata: [DONE]\r\r") + "0\r\n\r\n";
  const std::string wire = kHead + body;
  for (size_t step = 1; step <= wire.size(); ++step) {
    ResponseParser p = feed_in(wire, step);
    CHECK(p.complete());
    CHECK(p.status() == 200);
    CHECK(p.keep_alive());
    CHECK(p.events().size() == 3);
    CHECK(p.events()[0].data == "{\"a\":1}");
    CHECK(p.events()[1].data == "x\ny");
    CHECK(p.events()[2].data == "[DONE]");
    CHECK(p.done_seen());
    CHECK(!p.truncated());
    // Each event is stamped with the piece holding the byte that ended it (the blank line's first line end).
    const size_t end0 = wire.find("{\"a\":1}\n\n") + 8;
    CHECK(p.events()[0].t_ns == static_cast<int64_t>(end0 / step));
  }
}

void merged_responses_stop_at_the_end() {
  const std::string one = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ndata: 1\n\n";
  const std::string wire = one + one;
  ResponseParser p;
  CHECK(p.feed(wire.data(), wire.size(), 7) == one.size());
  CHECK(p.complete());
  CHECK(p.events().size() == 1 && p.events()[0].t_ns == 7);
}

void oversized_inputs_throw() {
  StreamLimits small{16, 32};
  const std::string long_line = kHead + chunk("data: " + std::string(40, 'a') + "\n\n");
  bool thrown = false;
  try {
    feed_in(long_line, 3, small);
  } catch (const ParseError& e) {
    thrown = e.kind() == ErrorKind::kStream;
  }
  CHECK(thrown);
  std::string many = kHead;
  for (int i = 0; i < 5; ++i) many += chunk("data: 0123456789\n");
  thrown = false;
  try {
    feed_in(many, 5, small);
  } catch (const ParseError& e) {
    thrown = e.kind() == ErrorKind::kStream;
  }
  CHECK(thrown);
  const std::string huge_head = "HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'h');
  thrown = false;
  try {
    feed_in(huge_head, 4096);
  } catch (const ParseError& e) {
    thrown = e.kind() == ErrorKind::kConnection;
  }
  CHECK(thrown);
  ResponseParser p;
  const std::string bad = kHead + "zz\r\n";
  CHECK_THROWS(p.feed(bad.data(), bad.size(), 0), ParseError);
  ResponseParser q;
  const std::string overrun = kHead + "3\r\nabcdef\r\n";
  CHECK_THROWS(q.feed(overrun.data(), overrun.size(), 0), ParseError);
}

void eof_and_truncation() {
  const std::string cut = kHead + chunk("data: half");
  ResponseParser p = feed_in(cut, 5);
  CHECK(!p.complete());
  CHECK_THROWS(p.eof(), ParseError);
  const std::string until_close = "HTTP/1.0 200 OK\r\n\r\ndata: a\n\ndata: b";
  ResponseParser q = feed_in(until_close, 4);
  CHECK(!q.keep_alive());
  q.eof();
  CHECK(q.complete() && q.truncated() && q.events().size() == 1);
}

void error_body_is_kept_bounded() {
  const std::string wire = "HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'e');
  ResponseParser p = feed_in(wire, 77);
  CHECK(p.complete() && p.status() == 503);
  CHECK(p.error_body().size() == fastmeter::http::kMaxErrorBodyBytes);
  CHECK(p.events().empty());
}

void interim_head_is_skipped() {
  const std::string wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
  ResponseParser p = feed_in(wire, 2);
  CHECK(p.complete() && p.status() == 204);
}

}  // namespace

int main() {
  events_survive_any_split();
  merged_responses_stop_at_the_end();
  oversized_inputs_throw();
  eof_and_truncation();
  error_body_is_kept_bounded();
  interim_head_is_skipped();
  return 0;
}

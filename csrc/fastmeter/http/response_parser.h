// Incremental HTTP/1.1 response parser with Server-Sent Events framing, for the native load-generator transport.
//
// Plain C++ (no I/O, no threads): bytes in, one response's status, headers, SSE events and error body out, so
// tests feed it arbitrary splits. Framing: Content-Length, chunked (extensions and trailers skipped) or until
// close. SSE (WHATWG event-stream, as python/fastmeter/adapters/sse.py): lines end with LF, CRLF or CR; ':' starts
// a comment; "field:value" drops one leading space; data lines join with LF; a blank line dispatches an event that
// had a data line. Each event carries the t_ns of the feed() whose bytes completed it. Bounded: a head over
// kMaxHeadBytes, a chunk-size line over kMaxChunkLineBytes, an SSE line over max_line_bytes or an event's data
// over max_event_bytes throws at once instead of buffering on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastmeter::http {

inline constexpr size_t kMaxHeadBytes = 64 * 1024;
inline constexpr size_t kMaxChunkLineBytes = 4096;
inline constexpr size_t kDefaultMaxLineBytes = 16u << 20;
inline constexpr size_t kDefaultMaxEventBytes = 16u << 20;
inline constexpr size_t kMaxErrorBodyBytes = 500;  // an error response's body is kept up to this for the message

// Which status the request gets in Python: broken HTTP framing is a connection error, a broken event stream a
// stream error.
enum class ErrorKind : int { kNone = 0, kConnection = 1, kStream = 2, kTimeout = 3 };

class ParseError : public std::runtime_error {
 public:
  ParseError(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

struct SseEvent {
  std::string data;
  int64_t t_ns;
};

struct StreamLimits {
  size_t max_line_bytes = kDefaultMaxLineBytes;
  size_t max_event_bytes = kDefaultMaxEventBytes;
};

class ResponseParser {
 public:
  explicit ResponseParser(StreamLimits limits = {}) : limits_(limits) {}

  // Bytes of this response that arrived at t_ns. Returns how many were used: fewer than n only once the response
  // is complete (bytes past its end belong to no request we sent). Throws ParseError.
  size_t feed(const char* p, size_t n, int64_t t_ns);
  // The peer closed the connection: ends an until-close body; anywhere else it is a ParseError (kConnection).
  void eof();

  bool head_done() const { return state_ > kHead; }
  bool complete() const { return state_ == kComplete; }
  int status() const { return status_; }
  bool keep_alive() const { return keep_alive_; }
  const std::string& content_encoding() const { return content_encoding_; }
  // The body ended inside an event (a line or data not yet dispatched): the stream was cut short.
  bool truncated() const { return !line_.empty() || has_data_; }
  // "data: [DONE]" was dispatched (it is also in events()): the OpenAI stream's terminator.
  bool done_seen() const { return done_seen_; }
  int64_t done_t_ns() const { return done_t_ns_; }
  // Reads that carried body bytes (a read = one feed() call with its own t_ns).
  int reads() const { return reads_; }
  std::vector<SseEvent>& events() { return events_; }
  const std::string& error_body() const { return error_body_; }

 private:
  enum State { kHead, kSize, kData, kDataEnd, kTrailer, kLength, kUntilClose, kComplete };

  void on_line(State state, const std::string& line);
  void on_head(const std::string& head);
  void body(const char* p, size_t n, int64_t t_ns);
  void sse_line(int64_t t_ns);
  void finish() { state_ = kComplete; }

  StreamLimits limits_;
  State state_ = kHead;
  std::string pending_;  // a partial head or chunk-size line
  uint64_t remaining_ = 0;
  int status_ = 0;
  bool keep_alive_ = true;
  std::string content_encoding_;
  int64_t last_body_t_ns_ = 0;
  bool any_body_read_ = false;
  int reads_ = 0;
  // SSE state
  std::string line_;  // the unfinished SSE line
  bool cr_ = false;   // the last byte was CR: an LF right after it is the same line end
  std::string data_;
  bool has_data_ = false;
  bool done_seen_ = false;
  int64_t done_t_ns_ = 0;
  std::vector<SseEvent> events_;
  std::string error_body_;
};

}  // namespace fastmeter::http

#include "fastmeter/http/response_parser.h"

#include <algorithm>
#include <cstring>

namespace fastmeter::http {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  return s;
}

[[noreturn]] void framing(const std::string& what) { throw ParseError(ErrorKind::kConnection, what); }

std::string shown(const std::string& s) { return s.substr(0, 80); }

}  // namespace

size_t ResponseParser::feed(const char* p, size_t n, int64_t t_ns) {
  size_t pos = 0;
  while (pos < n) {
    switch (state_) {
      case kComplete:
        return pos;
      case kData:
      case kLength: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(n - pos, remaining_));
        body(p + pos, take, t_ns);
        pos += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          if (state_ == kLength) {
            finish();
          } else {
            state_ = kDataEnd;
          }
        }
        break;
      }
      case kUntilClose:
        body(p + pos, n - pos, t_ns);
        pos = n;
        break;
      case kHead: {
        // The head ends at CRLFCRLF, which may straddle reads: search from 3 bytes before the new ones.
        const size_t old = pending_.size();
        pending_.append(p + pos, n - pos);
        const size_t from = old >= 3 ? old - 3 : 0;
        const size_t i = pending_.find("\r\n\r\n", from);
        if (i == std::string::npos) {
          if (pending_.size() > kMaxHeadBytes) framing("response head longer than 65536 bytes");
          pos = n;
          break;
        }
        pos += i + 4 - old;
        std::string head = pending_.substr(0, i);
        pending_.clear();
        on_head(head);
        break;
      }
      default: {  // a chunk-size line, the CRLF after chunk data, or a trailer line
        const void* nl = std::memchr(p + pos, '\n', n - pos);
        if (nl == nullptr) {
          pending_.append(p + pos, n - pos);
          if (pending_.size() > kMaxChunkLineBytes) framing("chunk line longer than 4096 bytes");
          pos = n;
          break;
        }
        const size_t i = static_cast<size_t>(static_cast<const char*>(nl) - p);
        pending_.append(p + pos, i - pos);
        pos = i + 1;
        std::string line;
        line.swap(pending_);
        if (line.size() > kMaxChunkLineBytes) framing("chunk line longer than 4096 bytes");
        on_line(state_, line);
      }
    }
  }
  return pos;
}

void ResponseParser::eof() {
  if (state_ == kUntilClose) {
    finish();
  } else if (state_ != kComplete) {
    framing(state_ == kHead ? "the server closed the connection before the response head"
                            : "the server closed the connection in the middle of the response body");
  }
}

void ResponseParser::on_line(State state, const std::string& line) {
  const std::string t = trim(line);
  if (state == kSize) {
    const std::string digits = trim(t.substr(0, t.find(';')));
    if (digits.empty() || digits.size() > 15) framing("bad chunk size line '" + shown(line) + "'");
    uint64_t size = 0;
    for (char c : digits) {
      int v;
      if (c >= '0' && c <= '9') {
        v = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v = c - 'A' + 10;
      } else {
        framing("bad chunk size line '" + shown(line) + "'");
      }
      size = size * 16 + static_cast<uint64_t>(v);
    }
    if (size > 0) {
      state_ = kData;
      remaining_ = size;
    } else {
      state_ = kTrailer;
    }
  } else if (state == kDataEnd) {
    if (!t.empty()) framing("chunk data longer than its size line said");
    state_ = kSize;
  } else if (t.empty()) {  // kTrailer: the blank line ends the body
    finish();
  }
}

void ResponseParser::on_head(const std::string& head) {
  size_t eol = head.find("\r\n");
  const std::string first = head.substr(0, eol);
  const size_t sp = first.find(' ');
  const std::string version = first.substr(0, sp);
  const std::string code = sp == std::string::npos ? "" : first.substr(sp + 1, 3);
  const bool digits =
      code.size() == 3 && std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (version.rfind("HTTP/", 0) != 0 || !digits) framing("not an HTTP response: '" + shown(first) + "'");
  const int status = std::stoi(code);
  if (status >= 100 && status < 200) return;  // interim response (100 Continue): the real head follows
  status_ = status;
  std::string connection, te, length;
  bool has_length = false;
  while (eol != std::string::npos) {
    const size_t start = eol + 2;
    eol = head.find("\r\n", start);
    const std::string line = head.substr(start, eol == std::string::npos ? std::string::npos : eol - start);
    const size_t colon = line.find(':');
    const std::string name = lower(trim(line.substr(0, colon)));
    const std::string value = colon == std::string::npos ? "" : trim(line.substr(colon + 1));
    if (name == "connection") connection = lower(value);
    if (name == "transfer-encoding") te = lower(value);
    if (name == "content-encoding") content_encoding_ = lower(value);
    if (name == "content-length") {
      length = value;
      has_length = true;
    }
  }
  keep_alive_ = version != "HTTP/1.0" && connection != "close";
  if (status == 204 || status == 304) {
    finish();
  } else if (te.find("chunked") != std::string::npos) {
    state_ = kSize;
  } else if (has_length) {
    if (length.empty() || length.size() > 18 ||
        !std::all_of(length.begin(), length.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      framing("bad Content-Length '" + shown(length) + "'");
    }
    remaining_ = std::stoull(length);
    state_ = kLength;
    if (remaining_ == 0) finish();
  } else {
    state_ = kUntilClose;
    keep_alive_ = false;
  }
}

void ResponseParser::body(const char* p, size_t n, int64_t t_ns) {
  if (n == 0) return;
  if (!any_body_read_ || t_ns != last_body_t_ns_) {  // several HTTP chunks of one read count as one read
    any_body_read_ = true;
    last_body_t_ns_ = t_ns;
    ++reads_;
  }
  if (status_ >= 400) {  // an error page, not an event stream: keep its start for the message
    error_body_.append(p, std::min(n, kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, error_body_.size())));
    return;
  }
  size_t i = 0;
  if (cr_) {
    cr_ = false;
    if (p[0] == '\n') i = 1;  // the LF of a CRLF split between reads
  }
  while (i < n) {
    size_t k = i;
    while (k < n && p[k] != '\n' && p[k] != '\r') ++k;
    if (line_.size() + (k - i) > limits_.max_line_bytes) {
      throw ParseError(ErrorKind::kStream,
                       "an SSE line exceeds " + std::to_string(limits_.max_line_bytes) + " bytes without a line end");
    }
    line_.append(p + i, k - i);
    if (k == n) break;
    i = k + 1;
    if (p[k] == '\r') {
      if (i == n) {
        cr_ = true;
      } else if (p[i] == '\n') {
        ++i;
      }
    }
    sse_line(t_ns);
  }
}

void ResponseParser::sse_line(int64_t t_ns) {
  if (line_.empty()) {
    if (has_data_) {
      if (data_ == "[DONE]" && !done_seen_) {
        done_seen_ = true;
        done_t_ns_ = t_ns;
      }
      events_.push_back(SseEvent{std::move(data_), t_ns});
      data_.clear();
    }
    has_data_ = false;
    return;
  }
  if (line_[0] != ':') {  // ':' starts a comment (keep-alive ping)
    const size_t colon = line_.find(':');
    const size_t field_end = colon == std::string::npos ? line_.size() : colon;
    if (line_.compare(0, field_end, "data") == 0 && field_end == 4) {
      size_t v = colon == std::string::npos ? line_.size() : colon + 1;
      if (v < line_.size() && line_[v] == ' ') ++v;
      const size_t joined = data_.size() + (has_data_ ? 1 : 0) + (line_.size() - v);
      if (joined > limits_.max_event_bytes) {
        throw ParseError(ErrorKind::kStream,
                         "an SSE event's data exceeds " + std::to_string(limits_.max_event_bytes) + " bytes");
      }
      if (has_data_) data_.push_back('\n');
      data_.append(line_, v, std::string::npos);
      has_data_ = true;
    }
    // "event", "id", "retry" and unknown fields do not change what the adapters read.
  }
  line_.clear();
}

}  // namespace fastmeter::http

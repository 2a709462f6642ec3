// StreamClient, one socket at a time: connecting, writing the request, reading and parsing the response, and how
// each request ends (answered, failed, retried on a fresh connection) and its connection after it.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "fastmeter/clock.h"
#include "fastmeter/http/stream_client.h"
#include "fastmeter/http/stream_conn.h"

namespace fastmeter::http {

StreamClient::Conn* StreamClient::open_conn(std::string& err) {
  if (!resolve_error_.empty()) {
    err = resolve_error_;
    return nullptr;
  }
  const std::string where = host_ + ":" + std::to_string(port_);
  const int fd = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = "cannot connect to " + where + " (socket: " + errno_text(errno) + ")";
    return nullptr;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bool connecting = false;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr_), addr_len_) != 0) {
    if (errno != EINPROGRESS) {
      err = "cannot connect to " + where + " (" + errno_text(errno) + ")";
      ::close(fd);
      return nullptr;
    }
    connecting = true;
  }
  auto conn = std::make_unique<Conn>();
  Conn* c = conn.get();
  c->fd = fd;
  c->connecting = connecting;
  c->want_out = connecting;  // a non-blocking connect reports completion as writable
  epoll_event ev{};
  ev.events = EPOLLIN | (connecting ? EPOLLOUT : 0u);
  ev.data.ptr = c;
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  conns_.push_back(std::move(conn));
  opened_.fetch_add(1, std::memory_order_relaxed);
  return c;
}

void StreamClient::on_event(Conn* c, uint32_t events) {
  if (c->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      fail(c, ErrorKind::kConnection,
           "cannot connect to " + host_ + ":" + std::to_string(port_) + " (" + errno_text(err ? err : ECONNREFUSED) +
               ")");
      return;
    }
    if (!(events & EPOLLOUT)) return;
    c->connecting = false;
    if (c->busy) flush(c);
    if (c->fd < 0) return;
  } else if (events & EPOLLOUT) {
    flush(c);
    if (c->fd < 0) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
}

void StreamClient::set_out(Conn* c, bool want) {
  if (c->want_out == want) return;
  c->want_out = want;
  epoll_event ev{};
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
  ev.data.ptr = c;
  ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd, &ev);
}

void StreamClient::flush(Conn* c) {
  while (c->out_off < c->out.size()) {
    const ssize_t n = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_out(c, true);
      return;
    } else {
      on_closed(c, errno_text(errno));
      return;
    }
  }
  set_out(c, false);
}

void StreamClient::on_readable(Conn* c) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(c->fd, buf, sizeof buf, 0);
    if (n > 0) {
      const int64_t t_ns = monotonic_ns();  // first thing: when these bytes reached us
      if (!c->busy) {  // bytes outside any response: the connection cannot be trusted
        destroy(c);
        return;
      }
      c->got_bytes = true;
      size_t used;
      try {
        used = c->parser->feed(buf, static_cast<size_t>(n), t_ns);
      } catch (const ParseError& e) {
        fail(c, e.kind(), e.what());
        return;
      }
      after_feed(c, t_ns, used < static_cast<size_t>(n));
      if (c->fd < 0 || !c->busy || static_cast<size_t>(n) < sizeof buf) return;  // level-triggered: no EAGAIN read
    } else if (n == 0) {
      on_closed(c, "");
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      on_closed(c, errno_text(errno));
      return;
    }
  }
}

void StreamClient::on_closed(Conn* c, const std::string& why) {
  if (!c->busy || c->answered) {  // an idle or draining connection the server closed: nothing lost
    destroy(c);
    return;
  }
  if (!c->got_bytes && c->reused) {  // the server timed out the idle connection as we sent: once more, fresh
    Job j;
    j.id = c->result.id;
    j.request = std::move(c->out);
    j.timeout_ns = c->timeout_ns;
    Result r = std::move(c->result);
    c->busy = false;
    --active_;  // begin() counts it again on the fresh connection
    destroy(c);
    begin(std::move(j), std::move(r), true);
    return;
  }
  try {
    if (!why.empty()) {
      const char* where = c->parser->head_done() ? "in the middle of the response body" : "before the response head";
      throw ParseError(ErrorKind::kConnection, std::string("connection lost ") + where + " (" + why + ")");
    }
    c->parser->eof();
  } catch (const ParseError& e) {
    fail(c, e.kind(), e.what());
    return;
  }
  after_feed(c, monotonic_ns(), true);
}

void StreamClient::after_feed(Conn* c, int64_t t_ns, bool leftover) {
  ResponseParser& p = *c->parser;
  if (!c->answered && p.done_seen()) answer(c, p.done_t_ns(), ErrorKind::kNone, "");
  if (p.complete()) {
    if (!c->answered) answer(c, t_ns, ErrorKind::kNone, "");
    if (p.keep_alive() && !leftover) {
      release(c);
    } else {
      destroy(c);
    }
  }
}

void StreamClient::answer(Conn* c, int64_t end_ns, ErrorKind kind, const std::string& error) {
  ResponseParser& p = *c->parser;
  Result& r = c->result;
  r.end_ns = end_ns;
  r.error_kind = kind;
  r.error = error;
  r.http_status = p.status();
  r.content_encoding = p.content_encoding();
  r.events = std::move(p.events());
  p.events().clear();
  r.error_body = p.error_body();
  r.done_seen = p.done_seen();
  r.complete = p.complete();
  r.truncated = p.complete() && p.truncated();
  r.reads = p.reads();
  publish(std::move(r));
  c->result = Result{};
  c->answered = true;
  --active_;  // the slot frees at the answer; the connection may still drain the body's rest
  c->deadline_ns = end_ns + kDrainGraceNs;
}

void StreamClient::fail(Conn* c, ErrorKind kind, const std::string& error) {
  if (c->busy && !c->answered) answer(c, monotonic_ns(), kind, error);
  destroy(c);
}

void StreamClient::release(Conn* c) {
  c->busy = false;
  c->answered = false;
  c->reused = true;
  c->deadline_ns = INT64_MAX;
  c->out.clear();
  idle_.push_back(c);
}

void StreamClient::destroy(Conn* c) {
  if (c->fd < 0) return;
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  c->fd = -1;
  idle_.erase(std::remove(idle_.begin(), idle_.end(), c), idle_.end());
}

}  // namespace fastmeter::http

#include "fastmeter/http/stream_client.h"

#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "fastmeter/clock.h"

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

namespace {

char wake_tag, timer_tag;  // epoll data.ptr of the two control fds; anything else is a Conn*

std::string errno_text(int err) { return std::string(std::strerror(err)); }

void drain_counter(int fd) {
  uint64_t v;
  while (::read(fd, &v, sizeof v) > 0) {
  }
}

}  // namespace

StreamClient::StreamClient(std::string host, int port, size_t max_connections, StreamLimits limits, bool realtime)
    : host_(std::move(host)),
      port_(port),
      max_connections_(std::max<size_t>(1, max_connections)),
      limits_(limits),
      realtime_(realtime) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {  // every request then fails with this, as a refused connect would
    resolve_error_ = "cannot resolve " + host_ + " (" + ::gai_strerror(rc) + ")";
  } else {
    std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
    addr_len_ = res->ai_addrlen;
    ::freeaddrinfo(res);
  }
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  notify_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wake_fd_ < 0 || timer_fd_ < 0 || notify_fd_ < 0) {
    const int err = errno;
    for (int fd : {epfd_, wake_fd_, timer_fd_, notify_fd_}) {
      if (fd >= 0) ::close(fd);
    }
    throw std::system_error(err, std::generic_category(), "native HTTP client: creating its epoll set");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &wake_tag;
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  ev.data.ptr = &timer_tag;
  ::epoll_ctl(epfd_, EPOLL_CTL_ADD, timer_fd_, &ev);
  thread_ = std::thread([this] { loop(); });
  thread_cpu_known_ = ::pthread_getcpuclockid(thread_.native_handle(), &thread_cpu_clock_) == 0;
}

StreamClient::~StreamClient() {
  close();
  for (int fd : {epfd_, wake_fd_, timer_fd_, notify_fd_}) ::close(fd);
}

void StreamClient::close() {
  if (!stop_.exchange(true)) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
}

void StreamClient::submit(std::vector<Job> jobs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_.load()) {
      for (Job& j : jobs) incoming_.push_back(std::move(j));
      jobs.clear();
    }
  }
  for (Job& j : jobs) {  // closed already: each still gets its Result
    Result r;
    r.id = j.id;
    r.error_kind = ErrorKind::kConnection;
    r.error = "the native HTTP client was closed before the request was sent";
    publish(std::move(r));
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

int64_t StreamClient::thread_cpu_ns() const {
  if (!thread_cpu_known_) return -1;
  timespec ts{};
  if (::clock_gettime(thread_cpu_clock_, &ts) != 0) return -1;  // the thread has ended
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

std::string StreamClient::sched_policy() const {
  const int p = policy_.load(std::memory_order_acquire);
  return p < 0 ? "" : p == SCHED_FIFO ? "SCHED_FIFO" : p == SCHED_RR ? "SCHED_RR" : "SCHED_OTHER";
}

std::vector<Result> StreamClient::take() {
  drain_counter(notify_fd_);  // before the swap: a Result published after it signals again
  std::vector<Result> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.swap(done_);
  return out;
}

void StreamClient::publish(Result&& r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(std::move(r));
  }
  const uint64_t one = 1;
  (void)!::write(notify_fd_, &one, sizeof one);
}

void StreamClient::loop() {
  ::prctl(PR_SET_TIMERSLACK, 1UL);  // scheduled sends wake on time, not up to 50 us late
  if (realtime_) {  // without CAP_SYS_NICE this fails and the thread stays SCHED_OTHER, as sched_policy() reports
    sched_param sp{};
    sp.sched_priority = sched_get_priority_min(SCHED_FIFO);
    pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
  }
  int policy = -1;
  sched_param cur{};
  if (pthread_getschedparam(pthread_self(), &policy, &cur) == 0) policy_.store(policy, std::memory_order_release);
  tid_.store(static_cast<int>(::gettid()), std::memory_order_release);
  epoll_event evs[256];
  std::vector<std::unique_ptr<Conn>> dead;
  while (!stop_.load(std::memory_order_relaxed)) {
    int64_t now = monotonic_ns();
    while (!timed_.empty() && timed_.top().scheduled_ns <= now) {
      Job j = std::move(const_cast<Job&>(timed_.top()));  // pop() only compares scheduled_ns, left intact
      timed_.pop();
      const int64_t at = j.scheduled_ns;
      ready_.emplace_back(std::move(j), at);
    }
    check_deadlines(now);
    dispatch(now);
    arm_timer(now);
    const int n = ::epoll_wait(epfd_, evs, 256, -1);
    for (int i = 0; i < n; ++i) {
      void* tag = evs[i].data.ptr;
      if (tag == &wake_tag) {
        drain_counter(wake_fd_);
        accept_submissions();
      } else if (tag == &timer_tag) {
        drain_counter(timer_fd_);
        timer_at_ = 0;
      } else {
        Conn* c = static_cast<Conn*>(tag);
        if (c->fd >= 0) on_event(c, evs[i].events);  // a Conn destroyed earlier in this batch is skipped
      }
    }
    for (auto& c : conns_) {  // free this batch's closed connections only now: later events may name them
      if (c->fd < 0) dead.push_back(std::move(c));
    }
    conns_.erase(std::remove(conns_.begin(), conns_.end(), nullptr), conns_.end());
    dead.clear();
  }
  // Closed: nothing is dropped. In flight: a connection error; queued: unsent.
  const int64_t now = monotonic_ns();
  for (auto& c : conns_) {
    if (c->fd >= 0 && c->busy && !c->answered) {
      answer(c.get(), now, ErrorKind::kConnection, "the native HTTP client was closed before the response finished");
    }
    if (c->fd >= 0) destroy(c.get());
  }
  accept_submissions();
  while (!timed_.empty()) {
    ready_.emplace_back(std::move(const_cast<Job&>(timed_.top())), 0);
    timed_.pop();
  }
  for (auto& [job, at] : ready_) {
    Result r;
    r.id = job.id;
    r.error_kind = ErrorKind::kConnection;
    r.error = "the native HTTP client was closed before the request was sent";
    publish(std::move(r));
  }
  ready_.clear();
}

void StreamClient::accept_submissions() {
  std::vector<Job> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs.swap(incoming_);
  }
  for (Job& j : jobs) {
    if (j.scheduled_ns == kAsSoonAsFree) {
      ready_.emplace_back(std::move(j), kAsSoonAsFree);
    } else {
      timed_.push(std::move(j));
    }
  }
}

void StreamClient::dispatch(int64_t now) {
  while (!ready_.empty()) {
    auto& [job, at] = ready_.front();
    if (now >= job.not_after_ns) {  // past the run's end: never sent, the caller does not count it
      Result r;
      r.id = job.id;
      publish(std::move(r));
      ready_.pop_front();
      continue;
    }
    if (active_ >= max_connections_) return;  // every slot busy: wait for an answer
    Job j = std::move(job);
    const int64_t scheduled = at == kAsSoonAsFree ? now : at;
    ready_.pop_front();
    Result r;
    r.id = j.id;
    r.sent = true;
    r.scheduled_ns = scheduled;
    r.send_ns = monotonic_ns();
    begin(std::move(j), std::move(r), false);
  }
}

void StreamClient::begin(Job&& job, Result&& r, bool fresh) {
  Conn* c = nullptr;
  if (!fresh && !idle_.empty()) {
    c = idle_.back();
    idle_.pop_back();
  }
  if (c == nullptr) {
    std::string err;
    c = open_conn(err);
    if (c == nullptr) {
      r.end_ns = monotonic_ns();
      r.error_kind = ErrorKind::kConnection;
      r.error = err;
      publish(std::move(r));
      return;
    }
  }
  c->busy = true;
  c->answered = false;
  ++active_;
  c->got_bytes = false;
  c->parser = std::make_unique<ResponseParser>(limits_);
  c->out = std::move(job.request);
  c->out_off = 0;
  c->timeout_ns = job.timeout_ns;
  c->deadline_ns = job.timeout_ns > 0 ? r.send_ns + job.timeout_ns : INT64_MAX;
  c->result = std::move(r);
  if (!c->connecting) flush(c);
}

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
      throw ParseError(ErrorKind::kConnection,
                       std::string("connection lost ") +
                           (c->parser->head_done() ? "in the middle of the response body" : "before the response head") +
                           " (" + why + ")");
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

void StreamClient::check_deadlines(int64_t now) {
  for (auto& c : conns_) {
    if (c->fd < 0 || !c->busy || now < c->deadline_ns) continue;
    if (c->answered) {  // the drain grace ran out: the server keeps the stream open
      destroy(c.get());
    } else {
      fail(c.get(), ErrorKind::kTimeout,
           "no complete response within " + std::to_string(static_cast<double>(c->timeout_ns) / 1e9) + " s");
    }
  }
}

void StreamClient::arm_timer(int64_t now) {
  int64_t at = timed_.empty() ? INT64_MAX : timed_.top().scheduled_ns;
  for (auto& c : conns_) {
    if (c->fd >= 0 && c->busy) at = std::min(at, c->deadline_ns);
  }
  const int64_t want = at == INT64_MAX ? 0 : at;  // 0: disarmed
  if (want == timer_at_) return;
  itimerspec spec{};
  if (at != INT64_MAX) {
    const int64_t when = std::max(at, now + 1);
    spec.it_value.tv_sec = when / 1000000000LL;
    spec.it_value.tv_nsec = when % 1000000000LL;
  }
  ::timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  timer_at_ = want;
}

}  // namespace fastmeter::http

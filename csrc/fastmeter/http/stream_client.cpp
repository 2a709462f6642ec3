#include "fastmeter/http/stream_client.h"

#include <netdb.h>
#include <pthread.h>
#include <sched.h>
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
#include "fastmeter/http/stream_conn.h"

namespace fastmeter::http {

namespace {

char wake_tag, timer_tag;  // epoll data.ptr of the two control fds; anything else is a Conn*

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

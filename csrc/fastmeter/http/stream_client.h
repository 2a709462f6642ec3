// The native transport of the load generator: one epoll thread that sends HTTP/1.1 requests on keep-alive
// connections and records each response's SSE events with the CLOCK_MONOTONIC time of the recv() that completed
// them, without ever taking the GIL.
//
// Python builds the request bytes and submits them as Jobs, each either at a scheduled instant (open loop: the
// thread owns the send schedule, so arrivals are kept while Python is busy) or as soon as a slot is free (closed
// loop). At most max_connections requests are unanswered at once: that is the concurrency cap. A request is
// answered (its Result handed to take()) at the stream's terminator ("data: [DONE]") or at the end of the body,
// whichever comes first, and its slot frees then; the connection drains the rest of the body for kDrainGraceNs
// before it is reused or closed, so for that while more than max_connections may be open. Every request ends in
// exactly one Result, failed or not; notify_fd() is readable while Results wait.
#pragma once

#include <sys/socket.h>

#include <ctime>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "fastmeter/http/response_parser.h"

namespace fastmeter::http {

inline constexpr int64_t kDrainGraceNs = 1'000'000'000;  // as DRAIN_GRACE_S of the asyncio client
inline constexpr int64_t kAsSoonAsFree = -1;

struct Job {
  uint64_t id = 0;
  int64_t scheduled_ns = kAsSoonAsFree;  // CLOCK_MONOTONIC instant to send at, or kAsSoonAsFree
  std::string request;                   // the whole HTTP request: head and body
  int64_t timeout_ns = 0;                // from the send to the answer; 0 = none
  int64_t not_after_ns = INT64_MAX;      // a job whose send would start at or after this is returned unsent
};

struct Result {
  uint64_t id = 0;
  bool sent = false;  // false: dropped at not_after_ns (or at close) before any byte went out
  int64_t scheduled_ns = 0;  // the planned instant, or for kAsSoonAsFree when a connection became free for it
  int64_t send_ns = 0;       // when the send started (connecting first, if no idle connection was left)
  int64_t end_ns = 0;        // the terminator's read, the body's end, or the failure
  int http_status = 0;
  std::string content_encoding;
  ErrorKind error_kind = ErrorKind::kNone;
  std::string error;
  std::vector<SseEvent> events;
  std::string error_body;
  bool done_seen = false;
  bool complete = false;   // the body ended (not only the terminator)
  bool truncated = false;  // the body ended inside an SSE event
  int reads = 0;
};

class StreamClient {
 public:
  // realtime: ask for SCHED_FIFO at the lowest real-time priority, as the sampler does, so runnable neighbours
  // cannot delay the receive stamps; without the privilege the thread stays SCHED_OTHER (sched_policy() says).
  StreamClient(std::string host, int port, size_t max_connections, StreamLimits limits = {}, bool realtime = false);
  ~StreamClient();
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;
  StreamClient(StreamClient&&) = delete;
  StreamClient& operator=(StreamClient&&) = delete;

  void submit(std::vector<Job> jobs);
  // Results finished since the last call, in the order they finished. Never blocks.
  std::vector<Result> take();
  int notify_fd() const { return notify_fd_; }
  // Stops the thread at once: requests in flight end as connection errors, queued ones unsent.
  void close();
  uint64_t connections_opened() const { return opened_.load(std::memory_order_relaxed); }
  // CPU time the thread has used (CLOCK_THREAD_CPUTIME of it), so benchmarks count the transport's whole cost.
  int64_t thread_cpu_ns() const;
  // The thread's kernel id (/proc/self/task/<tid>/schedstat tells how long it waited for a CPU); 0 before it ran.
  int thread_tid() const { return tid_.load(std::memory_order_acquire); }
  // "SCHED_FIFO" or "SCHED_OTHER" once the thread runs ("" before).
  std::string sched_policy() const;

 private:
  struct Conn;
  struct TimedLater {
    bool operator()(const Job& a, const Job& b) const { return a.scheduled_ns > b.scheduled_ns; }
  };

  void loop();
  void accept_submissions();
  void dispatch(int64_t now);
  void begin(Job&& job, Result&& r, bool fresh);
  Conn* open_conn(std::string& err);
  void on_event(Conn* c, uint32_t events);
  void on_readable(Conn* c);
  void on_closed(Conn* c, const std::string& why);
  void set_out(Conn* c, bool want);
  void flush(Conn* c);
  void after_feed(Conn* c, int64_t t_ns, bool leftover);
  void answer(Conn* c, int64_t end_ns, ErrorKind kind, const std::string& error);
  void fail(Conn* c, ErrorKind kind, const std::string& error);
  void release(Conn* c);
  void destroy(Conn* c);
  void check_deadlines(int64_t now);
  void arm_timer(int64_t now);
  void publish(Result&& r);

  const std::string host_;
  const int port_;
  const size_t max_connections_;
  const StreamLimits limits_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  std::string resolve_error_;

  int epfd_ = -1, wake_fd_ = -1, timer_fd_ = -1, notify_fd_ = -1;
  std::thread thread_;
  clockid_t thread_cpu_clock_{};
  bool thread_cpu_known_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> opened_{0};
  std::atomic<int> tid_{0};
  const bool realtime_;
  std::atomic<int> policy_{-1};

  std::mutex mu_;  // guards incoming_ and done_
  std::vector<Job> incoming_;
  std::vector<Result> done_;

  // Owned by the thread.
  std::priority_queue<Job, std::vector<Job>, TimedLater> timed_;
  std::deque<std::pair<Job, int64_t>> ready_;  // with the scheduled instant to record
  std::vector<std::unique_ptr<Conn>> conns_;   // every open connection
  std::vector<Conn*> idle_;
  size_t active_ = 0;  // requests sent and not yet answered: at most max_connections
  int64_t timer_at_ = 0;
};

}  // namespace fastmeter::http

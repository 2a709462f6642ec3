// The native transport's thread against a loopback server thread: every request answered once, keep-alive reuse
// under the connection cap, and close() answering what is still in flight (run under TSan and ASan by
// .ci/native-tests.sh).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "fastmeter/http/stream_client.h"

using fastmeter::http::ErrorKind;
using fastmeter::http::Job;
using fastmeter::http::kAsSoonAsFree;
using fastmeter::http::Result;
using fastmeter::http::StreamClient;

namespace {

// Serves keep-alive connections one after another on its own thread: each POST (head + Content-Length body) gets
// three SSE events and [DONE] in chunked framing, or nothing at all when `silent`.
class Server {
 public:
  explicit Server(bool silent) : silent_(silent) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    CHECK(::listen(fd_, 64) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~Server() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void run() {
    std::vector<std::thread> conns;
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) break;
      ++connections_;
      conns.emplace_back([this, c] { serve(c); });
    }
    for (auto& t : conns) t.join();
  }
  void serve(int c) {
    std::string in;
    char buf[4096];
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      for (;;) {
        const size_t head = in.find("\r\n\r\n");
        if (head == std::string::npos) break;
        const size_t cl = in.find("Content-Length: ");
        const size_t body = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
        if (in.size() < head + 4 + body) break;
        in.erase(0, head + 4 + body);
        if (silent_) continue;
        std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (const char* ev : {"data: 1\n\n", "data: 2\n\n", "data: 3\n\n", "data: [DONE]\n\n"}) {
          char size[32];
          std::snprintf(size, sizeof size, "%zx\r\n", std::strlen(ev));
          out += std::string(size) + ev + "\r\n";
        }
        out += "0\r\n\r\n";
        ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
      }
    }
    ::close(c);
  }

  bool silent_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

std::vector<Job> jobs(int n) {
  std::vector<Job> v;
  for (int i = 0; i < n; ++i) {
    Job j;
    j.id = static_cast<uint64_t>(i);
    j.scheduled_ns = kAsSoonAsFree;
    j.request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    v.push_back(std::move(j));
  }
  return v;
}

std::vector<Result> wait_for(StreamClient& c, size_t n) {
  std::vector<Result> all;
  for (int tries = 0; all.size() < n && tries < 1000; ++tries) {
    pollfd p{c.notify_fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    for (Result& r : c.take()) all.push_back(std::move(r));
  }
  return all;
}

void every_request_answered_once_under_the_cap() {
  Server srv(false);
  StreamClient client("127.0.0.1", srv.port(), 4);
  client.submit(jobs(40));
  std::vector<Result> rs = wait_for(client, 40);
  CHECK(rs.size() == 40);
  std::vector<int> seen(40, 0);
  for (const Result& r : rs) {
    ++seen[r.id];
    CHECK(r.sent && r.error_kind == ErrorKind::kNone && r.http_status == 200);
    CHECK(r.done_seen && r.events.size() == 4 && r.events[0].data == "1" && r.events[3].data == "[DONE]");
    CHECK(r.scheduled_ns <= r.send_ns && r.send_ns <= r.events[0].t_ns && r.end_ns == r.events[3].t_ns);
  }
  for (int s : seen) CHECK(s == 1);
  // A slot frees at [DONE], which may come a read before the body's end: at most twice the cap is ever opened.
  CHECK(client.connections_opened() <= 8);
  CHECK(client.thread_cpu_ns() > 0);
  client.close();
}

void close_answers_in_flight_and_queued_requests() {
  Server srv(true);
  StreamClient client("127.0.0.1", srv.port(), 2);
  client.submit(jobs(5));
  while (srv.connections() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  client.close();
  std::vector<Result> rs = client.take();
  CHECK(rs.size() == 5);
  int sent = 0;
  for (const Result& r : rs) {
    CHECK(r.error_kind == ErrorKind::kConnection);
    sent += r.sent ? 1 : 0;
  }
  CHECK(sent == 2);
}

void refused_connections_are_results_too() {
  int port;
  {
    Server srv(true);
    port = srv.port();
  }
  StreamClient client("127.0.0.1", port, 2);
  client.submit(jobs(3));
  std::vector<Result> rs = wait_for(client, 3);
  CHECK(rs.size() == 3);
  for (const Result& r : rs) {
    CHECK(r.error_kind == ErrorKind::kConnection && r.error.find("connect") != std::string::npos);
  }
}

}  // namespace

int main() {
  every_request_answered_once_under_the_cap();
  close_answers_in_flight_and_queued_requests();
  refused_connections_are_results_too();
  return 0;
}

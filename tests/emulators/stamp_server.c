// A streaming OpenAI-completions server whose every chunk carries its own CLOCK_MONOTONIC send time.
//
// Each content chunk's text is " <t_ns>", read from CLOCK_MONOTONIC just before the send() that writes it, so a
// client's receive stamp minus that number is the client's own delay (same machine, same clock). Written in C so
// that the server, not the client, is never the bottleneck: one thread, epoll, one send() per chunk, TCP_NODELAY.
//
// Usage: stamp_server GAP_US PREFILL_US
//   Listens on 127.0.0.1 (ephemeral port), prints the port on one line, serves until killed.
//   POST (any path): streams max_tokens chunks (read from the JSON body), the first PREFILL_US after the request,
//   then one every GAP_US (0: back to back), then a usage chunk, "data: [DONE]" and the end of the chunked body
//   in one write. Keep-alive. GET (any path, e.g. /v1/models or /health) answers 200 with a small JSON body.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 8192
#define IN_CAP 65536

typedef struct {
    int fd;
    char in[IN_CAP];
    size_t in_len;
    char *out;  // bytes accepted from the stream but not yet taken by the kernel
    size_t out_len, out_cap;
    int streaming;
    long n_total, n_sent;
    int64_t next_ns;
} conn_t;

static conn_t *conns[MAX_FD];
static int64_t gap_ns, prefill_ns;
static int epfd;
static int max_fd;  // highest fd ever used by a connection: bounds the scans

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void drop(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c->out);
    free(c);
}

// Append and try to write; returns -1 when the connection is gone.
static int emit(conn_t *c, const char *buf, size_t len) {
    if (c->out_len + len > c->out_cap) {
        size_t cap = (c->out_len + len) * 2;
        char *p = realloc(c->out, cap);
        if (!p) return -1;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

static int emit_chunk(conn_t *c, const char *payload, int len) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%x\r\n%.*s\r\n", len, len, payload);
    return emit(c, buf, (size_t)n);
}

static int send_token(conn_t *c) {
    char ev[512];
    int64_t t = now_ns();  // as late as possible before the send
    int n = snprintf(ev, sizeof ev,
                     "data: {\"id\":\"cmpl-0\",\"object\":\"text_completion\",\"created\":0,\"model\":\"m\","
                     "\"choices\":[{\"index\":0,\"text\":\" %lld\",\"logprobs\":null,\"finish_reason\":null,"
                     "\"stop_reason\":null}],\"usage\":null}\n\n",
                     (long long)t);
    return emit_chunk(c, ev, n);
}

static int send_tail(conn_t *c) {
    char ev[512], buf[1024];
    int n = snprintf(ev, sizeof ev,
                     "data: {\"id\":\"cmpl-0\",\"object\":\"text_completion\",\"created\":0,\"model\":\"m\","
                     "\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"total_tokens\":%ld,"
                     "\"completion_tokens\":%ld}}\n\n",
                     c->n_total + 1, c->n_total);
    int m = snprintf(buf, sizeof buf, "%x\r\n%.*s\r\n%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n", n, n, ev, 14);
    return emit(c, buf, (size_t)m);
}

// Serve every complete request in the input buffer; returns -1 when the connection is gone.
static int serve(conn_t *c) {
    while (!c->streaming) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) return 0;
        size_t head_len = (size_t)(end - c->in) + 4;
        long body_len = 0;
        char *cl = memmem(c->in, head_len, "Content-Length:", 15);
        if (!cl) cl = memmem(c->in, head_len, "content-length:", 15);
        if (cl) body_len = strtol(cl + 15, NULL, 10);
        if (head_len + (size_t)body_len > c->in_len) return 0;
        if (strncmp(c->in, "POST", 4) == 0) {
            char *mt = memmem(c->in + head_len, (size_t)body_len, "\"max_tokens\"", 12);
            long n = 16;
            if (mt) {
                mt += 12;
                while (*mt == ' ' || *mt == ':') mt++;
                n = strtol(mt, NULL, 10);
            }
            static const char head[] =
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
            if (emit(c, head, sizeof head - 1) < 0) return -1;
            c->streaming = 1;
            c->n_total = n;
            c->n_sent = 0;
            c->next_ns = now_ns() + prefill_ns;
        } else {
            static const char body[] = "{\"object\":\"list\",\"data\":[{\"id\":\"m\"}]}\n";
            char resp[256];
            int m = snprintf(resp, sizeof resp,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                             sizeof body - 1, body);
            if (emit(c, resp, (size_t)m) < 0) return -1;
        }
        memmove(c->in, c->in + head_len + body_len, c->in_len - head_len - (size_t)body_len);
        c->in_len -= head_len + (size_t)body_len;
    }
    return 0;
}

// Send whatever is due; returns -1 when the connection is gone.
static int advance(conn_t *c, int64_t now) {
    while (c->streaming && c->next_ns <= now) {
        if (send_token(c) < 0) return -1;
        c->n_sent++;
        c->next_ns += gap_ns;
        if (c->n_sent >= c->n_total) {
            if (send_tail(c) < 0) return -1;
            c->streaming = 0;
            return serve(c);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s GAP_US PREFILL_US\n", argv[0]);
        return 2;
    }
    gap_ns = atoll(argv[1]) * 1000;
    prefill_ns = atoll(argv[2]) * 1000;
    prctl(PR_SET_TIMERSLACK, 1);  // wake at each chunk's due time, not up to 50 us later
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("listen");
        return 1;
    }
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    epfd = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = tfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int64_t next = INT64_MAX;
        for (int fd = 0; fd <= max_fd; fd++)
            if (conns[fd] && conns[fd]->streaming && conns[fd]->next_ns < next) next = conns[fd]->next_ns;
        struct itimerspec its = {0};
        if (next != INT64_MAX) {
            its.it_value.tv_sec = next / 1000000000LL;
            its.it_value.tv_nsec = next % 1000000000LL;
            if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
        }
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        int n = epoll_wait(epfd, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (cfd >= MAX_FD) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof *c);
                    c->fd = cfd;
                    conns[cfd] = c;
                    if (cfd > max_fd) max_fd = cfd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
                }
            } else if (fd == tfd) {
                uint64_t expirations;
                ssize_t r = read(tfd, &expirations, sizeof expirations);
                (void)r;
            } else if (conns[fd]) {
                conn_t *c = conns[fd];
                if (events[i].events & EPOLLOUT && emit(c, "", 0) < 0) {
                    drop(c);
                    continue;
                }
                if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
                ssize_t r = recv(fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    drop(c);
                    continue;
                }
                c->in_len += (size_t)r;
                if (serve(c) < 0) drop(c);
            }
        }
        int64_t now = now_ns();
        for (int fd = 0; fd <= max_fd; fd++)
            if (conns[fd] && conns[fd]->streaming && advance(conns[fd], now) < 0) drop(conns[fd]);
    }
}

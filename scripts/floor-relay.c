// The least an MQTT 3.1.1 relay can do, to measure the floor of the paced latency rows: what loopback TCP, the
// wake-ups and the load generator cost before any broker does any work. NOT a broker: every PUBLISH goes to every
// connection that subscribed to anything (the bench rows use one topic), QoS 0 and 1 only, no sessions, no
// flow control (a subscriber's PUBACKs are read and dropped), no keep-alive checks, no limits.
//
// It takes the command lines sluice-bench and scripts/loadgen.sh give a Sluice binary, so it stands in for one:
//   cc -O2 -Wall -Wextra -Werror -std=gnu11 -o /tmp/floor-relay scripts/floor-relay.c
//   sluice-bench --sluice /tmp/floor-relay --only paced-fanin-q1 --rounds 3     # the "sluice" column is the floor
// One thread and one epoll loop. By default, as Mosquitto, each packet is answered and forwarded as soon as it is
// read, one write per packet (TCP_NODELAY). With FLOOR_RELAY_BATCH=1 in its environment, as Sluice, what one
// epoll_wait's events produce is gathered per connection and written once per connection after them.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_FD = 4096, IN_CAP = 1 << 20 };

struct conn {
    int open, subscriber;
    unsigned short next_id;
    size_t in_len, out_len;
    unsigned char *in, *out;
};
static struct conn conns[MAX_FD];
static int batch;                      // FLOOR_RELAY_BATCH: gather writes until the end of the epoll batch
static int dirty[MAX_FD], dirty_count;  // connections with gathered bytes
static int subscribers[MAX_FD], subscriber_count;

// Writes all of `len` bytes; the kernel's buffer is large next to these rows' rates, so a full one is waited out.
static void write_all(int fd, const unsigned char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            usleep(50);
        } else {
            return;  // the peer went away; its close comes through epoll
        }
    }
}

static void send_all(int fd, const unsigned char *p, size_t len) {
    struct conn *c = &conns[fd];
    if (!batch || c->out_len + len > IN_CAP) {
        if (c->out_len) write_all(fd, c->out, c->out_len);
        c->out_len = 0;
        write_all(fd, p, len);
        return;
    }
    if (c->out_len == 0) dirty[dirty_count++] = fd;
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
}

static void flush_dirty(void) {
    for (int i = 0; i < dirty_count; i++) {
        struct conn *c = &conns[dirty[i]];
        if (c->open && c->out_len) write_all(dirty[i], c->out, c->out_len);
        c->out_len = 0;
    }
    dirty_count = 0;
}

static void close_conn(int epfd, int fd) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    for (int i = 0; i < subscriber_count; i++)
        if (subscribers[i] == fd) subscribers[i--] = subscribers[--subscriber_count];
    close(fd);
    free(conns[fd].in);
    free(conns[fd].out);
    memset(&conns[fd], 0, sizeof conns[fd]);
}

// Handles one whole packet: `type_flags` is its first byte, `body` its variable header and payload.
static int handle(int fd, unsigned char type_flags, const unsigned char *body, size_t len) {
    switch (type_flags >> 4) {
    case 1: {  // CONNECT → CONNACK accepted
        static const unsigned char connack[] = {0x20, 2, 0, 0};
        send_all(fd, connack, sizeof connack);
        return 0;
    }
    case 8: {  // SUBSCRIBE → SUBACK granting each filter's requested QoS (at most 1)
        if (len < 2) return -1;
        unsigned char ack[260] = {0x90, 0, body[0], body[1]};
        size_t n = 4;
        for (size_t at = 2; at + 2 <= len && n < sizeof ack;) {
            size_t flen = (size_t)body[at] << 8 | body[at + 1];
            if (at + 2 + flen >= len) return -1;
            unsigned char qos = body[at + 2 + flen] & 3;
            ack[n++] = qos > 1 ? 1 : qos;
            at += 3 + flen;
        }
        ack[1] = (unsigned char)(n - 2);
        send_all(fd, ack, n);
        if (!conns[fd].subscriber) subscribers[subscriber_count++] = fd;
        conns[fd].subscriber = 1;
        return 0;
    }
    case 3: {  // PUBLISH → forwarded to every subscriber (at the publisher's QoS), then PUBACK at QoS 1
        int qos = (type_flags >> 1) & 3;
        if (len < 2 || qos > 1) return -1;
        size_t tlen = (size_t)body[0] << 8 | body[1];
        if (2 + tlen + (qos ? 2 : 0) > len) return -1;
        // The same topic, packet identifier (numbered per subscriber) and payload.
        static unsigned char out[IN_CAP + 8];
        size_t h = 0;
        out[h++] = (unsigned char)(0x30 | qos << 1);
        size_t rl = len;
        do {
            unsigned char b = rl & 0x7f;
            rl >>= 7;
            out[h++] = b | (rl ? 0x80 : 0);
        } while (rl);
        memcpy(out + h, body, len);
        for (int i = 0; i < subscriber_count; i++) {
            int s = subscribers[i];
            if (qos) {
                unsigned short id = ++conns[s].next_id ? conns[s].next_id : ++conns[s].next_id;
                out[h + 2 + tlen] = (unsigned char)(id >> 8);
                out[h + 2 + tlen + 1] = (unsigned char)id;
            }
            send_all(s, out, h + len);
        }
        if (qos) {
            unsigned char puback[] = {0x40, 2, body[2 + tlen], body[2 + tlen + 1]};
            send_all(fd, puback, sizeof puback);
        }
        return 0;
    }
    case 4: return 0;  // a subscriber's PUBACK: no window kept
    case 12: {         // PINGREQ → PINGRESP
        static const unsigned char pingresp[] = {0xd0, 0};
        send_all(fd, pingresp, sizeof pingresp);
        return 0;
    }
    case 14: return -1;  // DISCONNECT
    default: return -1;
    }
}

// Handles every whole packet in the connection's buffer; keeps a partial one. -1: close it.
static int drain(int fd) {
    struct conn *c = &conns[fd];
    size_t at = 0;
    for (;;) {
        if (c->in_len - at < 2) break;
        size_t rl = 0, i = 1;
        int shift = 0, whole = 0;
        while (at + i < c->in_len && i <= 4) {
            unsigned char b = c->in[at + i++];
            rl |= (size_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80)) {
                whole = 1;
                break;
            }
        }
        if (!whole) {
            if (i > 4) return -1;
            break;
        }
        if (rl > IN_CAP - 8) return -1;
        if (c->in_len - at - i < rl) break;
        if (handle(fd, c->in[at], c->in + at + i, rl) < 0) return -1;
        at += i + rl;
    }
    memmove(c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
    return 0;
}

int main(int argc, char **argv) {
    const char *conf = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "-c") == 0) conf = argv[i + 1];
    FILE *f = conf ? fopen(conf, "r") : NULL;
    if (!f) {
        fprintf(stderr, "usage: floor-relay [run] -c CONFIG (reads its 'listener PORT 127.0.0.1' line)\n");
        return 2;
    }
    batch = getenv("FLOOR_RELAY_BATCH") && strcmp(getenv("FLOOR_RELAY_BATCH"), "1") == 0;
    int port = 0;
    char line[512], addr[64] = "127.0.0.1";
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "listener %d %63s", &port, addr) >= 1) break;
    fclose(f);
    if (port <= 0) {
        fprintf(stderr, "floor-relay: no listener line in %s\n", conf);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(lfd, 128) < 0) {
        perror("floor-relay: listen");
        return 1;
    }
    int epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, events[64];
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(epfd, events, 64, -1);
        for (int e = 0; e < n; e++) {
            int fd = events[e].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (cfd >= MAX_FD) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[cfd] = (struct conn){.open = 1, .in = malloc(IN_CAP), .out = malloc(IN_CAP)};
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            struct conn *c = &conns[fd];
            ssize_t got = read(fd, c->in + c->in_len, IN_CAP - c->in_len);
            if (got == 0 || (got < 0 && errno != EAGAIN) || (got > 0 && (c->in_len += (size_t)got, drain(fd) < 0)))
                close_conn(epfd, fd);
        }
        flush_dirty();
    }
}

/*
 * mqtt-loadgen: an MQTT load generator on libmosquitto, independent of sluice-bench (issue 17).
 *
 * Build: scripts/loadgen.sh build (cc -O2 ... -lmosquitto -lpthread; Debian: apt-get install libmosquitto-dev).
 *
 *   mqtt-loadgen paced  --port P --pid PID [--pubs 10] [--subs 1] [--qos 1] [--rate 20000] [--seconds 10]
 *                       [--window 100] [--tick-us 0] [--nagle]
 *   mqtt-loadgen closed --port P --pid PID [--pubs 10] [--subs 1] [--qos 1] [--messages 100000] [--window 100]
 *
 * paced:  N publishers -> M subscribers on one topic, each publisher at rate/N msg/s for S seconds. Every
 *         message is 64 bytes: a CLOCK_MONOTONIC timestamp (8 bytes, taken just before mosquitto_publish),
 *         the publisher's number and the message's sequence number (4 + 4), then filler. Each subscriber
 *         records receive time - timestamp and marks (publisher, sequence) seen, which gives missing and
 *         duplicate counts. Publishers are interleaved: publisher i's k-th message is due at
 *         t0 + (k * N + i) / rate, so the total is one message every 1/rate seconds, not N at once.
 *         --tick-us T instead wakes on a T-microsecond grid and sends whatever is due, in bursts (as
 *         sluice-bench's 1 ms repeated task does), to show what bursts do to the latency tail.
 * closed: closed-loop throughput; each publisher keeps at most W messages unacknowledged (also set as
 *         libmosquitto's max_inflight, so libmosquitto never queues), M messages delivered in all
 *         (messages / (pubs * subs) per publisher); rate = delivered / (last receive - start).
 *
 * Both print the broker's CPU (utime + stime of /proc/PID/stat, all its threads) per delivered message and
 * this generator's own CPU (getrusage RUSAGE_SELF, all threads) over the same interval, as seconds and as a
 * share of one core. The result is also one line of key=value pairs starting with "RESULT" for scripts.
 * Exit status 1 on loss at QoS >= 1, a lost connection or a timeout; 2 on bad arguments.
 *
 * Threads. libmosquitto's own mosquitto_loop_start would give each client a thread (11 for fan-in), and a
 * publish from another thread then wakes that thread through libmosquitto's socket pair: two context
 * switches per message, on a 2-core machine shared with the broker. Instead every client is driven without
 * libmosquitto threads, by poll() on mosquitto_socket() with mosquitto_loop_read/write:
 *  - closed: one thread drives all clients. It tops every publisher up to its window, polls all sockets,
 *    reads what is ready and writes what libmosquitto could not write at once. The generator can never use
 *    more than one core, so the broker always has the other.
 *  - paced: two threads, each owning its clients outright (a libmosquitto client is touched by one thread
 *    only, so none of its locks are contended). The pacer owns the publishers: it sleeps with
 *    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) to the next absolute deadline (no drift: deadlines are
 *    computed from t0, never from the previous wake-up; timer slack set to 1 ns, the default 50 us would
 *    move every wake-up), publishes what is due, then reads whatever PUBACK/PUBREC/PUBCOMP is waiting
 *    without blocking. The receiver (main thread) owns the subscribers and blocks in poll(), so a message
 *    is timestamped as soon as it is readable, never after the pacer's sleep. The pacer's lateness
 *    (send time - deadline) is reported so a late generator is visible.
 * What libmosquitto costs the generator, unavoidably: packet__read reads a packet in three read() calls
 * (command byte, length, body), every queued packet is one send() and one 1-byte write() to its internal
 * socket pair, and QoS 2 messages reach on_message only at PUBREL (one round trip after the PUBLISH), so the
 * QoS 2 latency here includes that round trip.
 * TCP_NODELAY is set on every client (as sluice-bench does; libmosquitto's default is Nagle on);
 * --nagle leaves Nagle on. Loopback (127.0.0.1) only; every wait is bounded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { PAYLOAD_SIZE = 64, STAMP_SIZE = 16 };
static const double STALL_SECONDS = 5;  /* no new delivery for this long after the last publish: stop */
static const double GRACE_SECONDS = 30; /* hard limit beyond the paced duration (or for a closed run) */

struct options {
    bool paced;
    int port;
    long broker_pid;
    int pubs, subs, qos;
    double rate, seconds;
    long messages;
    int window;
    long tick_us;
    bool nagle;
};

struct client {
    struct mosquitto *mosq;
    int index;
    bool connected, subscribed, lost;
    long events; /* callbacks seen: progress marker for draining reads */
    /* publisher */
    uint32_t total, sent, acked;
    uint64_t next_due;
    /* subscriber */
    uint8_t *seen; /* one byte per (publisher, sequence) */
    uint64_t *latencies;
    long received, duplicates, foreign, last_receive;
};

struct run {
    struct options opt;
    char topic[64];
    struct client *pubs, *subs;
    uint32_t per_pub;
    uint64_t interval_ns; /* paced: time between two messages of one publisher */
    uint64_t start_ns;
    uint64_t acked_ns; /* when the last publisher's last message was acknowledged (QoS 0: written) */
    uint64_t *lateness; /* paced: send time - deadline of every message */
    long lateness_count;
    atomic_bool publishing_done, stop;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double seconds_since(uint64_t t0) { return (double)(now_ns() - t0) / 1e9; }

static double generator_cpu_seconds(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
           (double)r.ru_stime.tv_usec / 1e6;
}

/* utime + stime of the broker from /proc/PID/stat (fields 14 and 15, after the parenthesised name). */
static double broker_cpu_seconds(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- callbacks (run on the thread that owns the client) ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    (void)m;
    struct client *c = obj;
    if (rc == 0) c->connected = true;
    else {
        fprintf(stderr, "CONNACK refused: %s\n", mosquitto_connack_string(rc));
        c->lost = true;
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc) {
    (void)m;
    struct client *c = obj;
    if (rc != 0) c->lost = true;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted) {
    (void)m, (void)mid;
    struct client *c = obj;
    c->subscribed = count == 1 && granted[0] <= 2;
    if (!c->subscribed) c->lost = true;
    c->events++;
}

static void on_publish(struct mosquitto *m, void *obj, int mid) {
    (void)m, (void)mid;
    struct client *c = obj;
    c->acked++;
    c->events++;
}

static struct run *the_run; /* on_message needs the run's shape */

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    uint64_t now = now_ns();
    struct client *c = obj;
    struct run *r = the_run;
    c->events++;
    uint64_t stamp;
    uint32_t pub, seq;
    if (msg->payloadlen < STAMP_SIZE) {
        c->foreign++;
        return;
    }
    memcpy(&stamp, msg->payload, 8);
    memcpy(&pub, (const char *)msg->payload + 8, 4);
    memcpy(&seq, (const char *)msg->payload + 12, 4);
    if (pub >= (uint32_t)r->opt.pubs || seq >= r->per_pub) {
        c->foreign++;
        return;
    }
    size_t key = (size_t)pub * r->per_pub + seq;
    if (c->seen[key]) {
        c->duplicates++;
        return;
    }
    c->seen[key] = 1;
    c->latencies[c->received++] = now - stamp;
    c->last_receive = (long)(now - r->start_ns);
}

/* ---- client plumbing ---- */

static int connect_client(struct client *c, const struct options *o, const char *id, bool publisher) {
    c->mosq = mosquitto_new(id, true, c);
    if (!c->mosq) return -1;
    mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, o->nagle ? 0 : 1);
    if (publisher) mosquitto_max_inflight_messages_set(c->mosq, (unsigned)o->window);
    mosquitto_connect_callback_set(c->mosq, on_connect);
    mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
    mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
    mosquitto_publish_callback_set(c->mosq, on_publish);
    mosquitto_message_callback_set(c->mosq, on_message);
    int rc = mosquitto_connect(c->mosq, "127.0.0.1", o->port, 600);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "%s: connect to 127.0.0.1:%d: %s\n", id, o->port, mosquitto_strerror(rc));
        return -1;
    }
    uint64_t t0 = now_ns();
    while (!c->connected && !c->lost && seconds_since(t0) < 10) mosquitto_loop(c->mosq, 50, 1);
    if (!c->connected) fprintf(stderr, "%s: no CONNACK within 10 s\n", id);
    return c->connected ? 0 : -1;
}

static int subscribe_client(struct client *c, const char *topic, int qos) {
    if (mosquitto_subscribe(c->mosq, NULL, topic, qos) != MOSQ_ERR_SUCCESS) return -1;
    uint64_t t0 = now_ns();
    while (!c->subscribed && !c->lost && seconds_since(t0) < 10) mosquitto_loop(c->mosq, 50, 1);
    return c->subscribed ? 0 : -1;
}

/* Reads everything the socket holds. mosquitto_loop_read reads one packet when nothing is in flight, and
 * stops early when its 1-byte wake-up write hits a full socket pair (errno EAGAIN): so read again while a
 * call made progress, and stop when the socket itself answered EAGAIN. What is left, poll() reports again. */
static void drain(struct client *c) {
    for (int i = 0; i < 4096; i++) {
        long before = c->events;
        errno = 0;
        if (mosquitto_loop_read(c->mosq, 1) != MOSQ_ERR_SUCCESS) {
            c->lost = true;
            return;
        }
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && c->events == before) break;
    }
    if (mosquitto_want_write(c->mosq) && mosquitto_loop_write(c->mosq, 1) != MOSQ_ERR_SUCCESS) c->lost = true;
}

static void publish_one(struct run *r, struct client *p, uint64_t due) {
    unsigned char payload[PAYLOAD_SIZE];
    memset(payload, 'a', sizeof payload);
    uint32_t pub = (uint32_t)p->index, seq = p->sent;
    memcpy(payload + 8, &pub, 4);
    memcpy(payload + 12, &seq, 4);
    uint64_t stamp = now_ns();
    memcpy(payload, &stamp, 8);
    if (due && r->lateness) r->lateness[r->lateness_count++] = stamp > due ? stamp - due : 0;
    int rc = mosquitto_publish(p->mosq, NULL, r->topic, PAYLOAD_SIZE, payload, r->opt.qos, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "publisher %d: publish: %s\n", p->index, mosquitto_strerror(rc));
        p->lost = true;
        return;
    }
    p->sent++;
}

static bool all_acked(const struct run *r) {
    for (int i = 0; i < r->opt.pubs; i++)
        if (!r->pubs[i].lost && r->pubs[i].acked < r->pubs[i].total) return false;
    return true;
}

static bool any_lost(const struct run *r) {
    for (int i = 0; i < r->opt.pubs; i++)
        if (r->pubs[i].lost) return true;
    for (int i = 0; i < r->opt.subs; i++)
        if (r->subs[i].lost) return true;
    return false;
}

static long total_received(const struct run *r) {
    long n = 0;
    for (int i = 0; i < r->opt.subs; i++) n += r->subs[i].received;
    return n;
}

/* Polls `clients` once (POLLOUT too where libmosquitto holds unwritten packets) and services them. */
static void service(struct client *clients, int count, struct pollfd *fds, int timeout_ms) {
    for (int i = 0; i < count; i++) {
        fds[i].fd = clients[i].lost ? -1 : mosquitto_socket(clients[i].mosq);
        fds[i].events = POLLIN | (mosquitto_want_write(clients[i].mosq) ? POLLOUT : 0);
        fds[i].revents = 0;
    }
    if (poll(fds, (nfds_t)count, timeout_ms) <= 0) return;
    for (int i = 0; i < count; i++) {
        if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) drain(&clients[i]);
        if ((fds[i].revents & POLLOUT) && mosquitto_loop_write(clients[i].mosq, 1) != MOSQ_ERR_SUCCESS)
            clients[i].lost = true;
    }
}

/* ---- paced ---- */

static void sleep_until(uint64_t t) {
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void *pacer(void *arg) {
    struct run *r = arg;
    prctl(PR_SET_TIMERSLACK, 1UL);
    struct pollfd *fds = calloc((size_t)r->opt.pubs, sizeof *fds);
    uint64_t tick = (uint64_t)r->opt.tick_us * 1000u;
    uint64_t hard = r->start_ns + (uint64_t)((r->opt.seconds + GRACE_SECONDS) * 1e9);
    for (;;) {
        uint64_t next = UINT64_MAX;
        for (int i = 0; i < r->opt.pubs; i++) {
            struct client *p = &r->pubs[i];
            if (!p->lost && p->sent < p->total && p->next_due < next) next = p->next_due;
        }
        if (next == UINT64_MAX) break;
        if (tick) next = r->start_ns + (next - r->start_ns + tick - 1) / tick * tick;
        sleep_until(next);
        uint64_t now = now_ns();
        for (int i = 0; i < r->opt.pubs; i++) {
            struct client *p = &r->pubs[i];
            while (!p->lost && p->sent < p->total && p->next_due <= now) {
                publish_one(r, p, p->next_due);
                p->next_due += r->interval_ns;
            }
        }
        service(r->pubs, r->opt.pubs, fds, 0);
        if (atomic_load(&r->stop) || now > hard) break;
    }
    atomic_store(&r->publishing_done, true);
    /* Collect the last acknowledgements (bounded: the receiver sets stop). */
    while (!all_acked(r) && !atomic_load(&r->stop) && now_ns() < hard) service(r->pubs, r->opt.pubs, fds, 10);
    if (all_acked(r)) r->acked_ns = now_ns();
    free(fds);
    return NULL;
}

static bool receiver_finished(const struct run *r, long expected, uint64_t *last_progress, long *last_total,
                              uint64_t hard) {
    long got = total_received(r);
    uint64_t now = now_ns();
    if (got != *last_total) {
        *last_total = got;
        *last_progress = now;
    }
    bool published = atomic_load(&r->publishing_done);
    if (got >= expected && (published || r->opt.qos == 0)) return true;
    if (published && (double)(now - *last_progress) / 1e9 > STALL_SECONDS) return true;
    return now > hard || any_lost(r);
}

static void run_paced(struct run *r, long expected) {
    for (int i = 0; i < r->opt.pubs; i++) {
        /* Interleaved: publisher i starts i / rate after t0. */
        r->pubs[i].next_due = r->start_ns + (uint64_t)((double)i * 1e9 / r->opt.rate);
    }
    pthread_t thread;
    pthread_create(&thread, NULL, pacer, r);
    struct pollfd *fds = calloc((size_t)r->opt.subs, sizeof *fds);
    uint64_t hard = r->start_ns + (uint64_t)((r->opt.seconds + GRACE_SECONDS) * 1e9);
    uint64_t last_progress = now_ns();
    long last_total = -1;
    while (!receiver_finished(r, expected, &last_progress, &last_total, hard)) service(r->subs, r->opt.subs, fds, 20);
    atomic_store(&r->stop, true);
    pthread_join(thread, NULL);
    free(fds);
}

/* ---- closed loop ---- */

static void top_up(struct run *r, struct client *p) {
    while (!p->lost && p->sent < p->total) {
        if (r->opt.qos == 0 ? mosquitto_want_write(p->mosq) : p->sent - p->acked >= (uint32_t)r->opt.window) break;
        publish_one(r, p, 0);
    }
}

static void run_closed(struct run *r, long expected) {
    int count = r->opt.subs + r->opt.pubs; /* r->subs and r->pubs are one array, subscribers first */
    struct pollfd *fds = calloc((size_t)count, sizeof *fds);
    uint64_t hard = r->start_ns + (uint64_t)(GRACE_SECONDS * 1e9);
    uint64_t last_progress = now_ns();
    long last_total = -1;
    for (;;) {
        bool sent_all = true;
        for (int i = 0; i < r->opt.pubs; i++) {
            top_up(r, &r->pubs[i]);
            sent_all &= r->pubs[i].lost || r->pubs[i].sent >= r->pubs[i].total;
        }
        atomic_store(&r->publishing_done, sent_all);
        if (sent_all && !r->acked_ns && all_acked(r)) r->acked_ns = now_ns();
        if (receiver_finished(r, expected, &last_progress, &last_total, hard)) break;
        service(r->subs, count, fds, 20);
    }
    /* The last PUBACKs may still be on their way: collect them (bounded) so the publishers finish cleanly. */
    uint64_t t0 = now_ns();
    while (!all_acked(r) && !any_lost(r) && seconds_since(t0) < 2) service(r->pubs, r->opt.pubs, fds, 10);
    if (!r->acked_ns && all_acked(r)) r->acked_ns = now_ns();
    free(fds);
}

/* ---- report ---- */

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(const uint64_t *sorted, long n, double p) {
    if (n == 0) return -1;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1e3;
}

static void usage(void) {
    fprintf(stderr, "usage: mqtt-loadgen paced|closed --port P --pid BROKER_PID [--pubs N] [--subs M] [--qos Q]\n"
                    "       [--rate MSG_S] [--seconds S] [--messages TOTAL] [--window W] [--tick-us T] [--nagle]\n");
    exit(2);
}

static void parse(int argc, char **argv, struct options *o) {
    *o = (struct options){.pubs = 10, .subs = 1, .qos = 1, .rate = 20000, .seconds = 10, .messages = 100000,
                          .window = 100};
    if (argc < 2) usage();
    if (!strcmp(argv[1], "paced")) o->paced = true;
    else if (strcmp(argv[1], "closed")) usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--nagle")) {
            o->nagle = true;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) o->port = atoi(v);
        else if (!strcmp(a, "--pid")) o->broker_pid = atol(v);
        else if (!strcmp(a, "--pubs")) o->pubs = atoi(v);
        else if (!strcmp(a, "--subs")) o->subs = atoi(v);
        else if (!strcmp(a, "--qos")) o->qos = atoi(v);
        else if (!strcmp(a, "--rate")) o->rate = atof(v);
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(a, "--messages")) o->messages = atol(v);
        else if (!strcmp(a, "--window")) o->window = atoi(v);
        else if (!strcmp(a, "--tick-us")) o->tick_us = atol(v);
        else usage();
    }
    bool bad = o->port <= 0 || o->port > 65535 || o->broker_pid <= 0 || o->pubs < 1 || o->pubs > 1000 ||
               o->subs < 1 || o->subs > 1000 || o->qos < 0 || o->qos > 2 || o->window < 1 || o->window > 65535 ||
               o->tick_us < 0 || o->rate <= 0 || o->seconds <= 0 || o->seconds > 600 || o->messages < 1 ||
               o->messages > 100000000;
    if (bad) usage();
}

int main(int argc, char **argv) {
    static struct run run;
    struct run *r = &run;
    the_run = r;
    parse(argc, argv, &r->opt);
    const struct options *o = &r->opt;
    if (broker_cpu_seconds(o->broker_pid) < 0) {
        fprintf(stderr, "cannot read /proc/%ld/stat\n", o->broker_pid);
        return 2;
    }
    if (o->paced) {
        r->per_pub = (uint32_t)(o->rate * o->seconds / o->pubs);
        r->interval_ns = (uint64_t)(1e9 * o->pubs / o->rate);
    } else {
        r->per_pub = (uint32_t)(o->messages / ((long)o->pubs * o->subs));
    }
    if (r->per_pub == 0) usage();
    snprintf(r->topic, sizeof r->topic, "loadgen/%ld/%u", (long)getpid(), (unsigned)now_ns());
    mosquitto_lib_init();
    r->subs = calloc((size_t)(o->subs + o->pubs), sizeof *r->subs);
    r->pubs = r->subs + o->subs;
    long expected_per_sub = (long)r->per_pub * o->pubs;
    long expected = expected_per_sub * o->subs;
    int failed = 0;
    for (int i = 0; i < o->subs && !failed; i++) {
        char id[64];
        snprintf(id, sizeof id, "lg%ld-s%d", (long)getpid(), i);
        struct client *s = &r->subs[i];
        s->index = i;
        s->seen = calloc((size_t)expected_per_sub, 1);
        s->latencies = calloc((size_t)expected_per_sub, sizeof *s->latencies);
        failed = connect_client(s, o, id, false) || subscribe_client(s, r->topic, o->qos);
    }
    for (int i = 0; i < o->pubs && !failed; i++) {
        char id[64];
        snprintf(id, sizeof id, "lg%ld-p%d", (long)getpid(), i);
        r->pubs[i].index = i;
        r->pubs[i].total = r->per_pub;
        failed = connect_client(&r->pubs[i], o, id, true);
    }
    if (failed) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    if (o->paced) r->lateness = calloc((size_t)r->per_pub * (size_t)o->pubs, sizeof *r->lateness);

    double gen0 = generator_cpu_seconds(), broker0 = broker_cpu_seconds(o->broker_pid);
    r->start_ns = now_ns();
    if (o->paced) run_paced(r, expected);
    else run_closed(r, expected);
    double wall = seconds_since(r->start_ns);
    double gen = generator_cpu_seconds() - gen0, broker = broker_cpu_seconds(o->broker_pid) - broker0;

    long received = 0, duplicates = 0, foreign = 0, last = 0, nlat = 0;
    for (int i = 0; i < o->subs; i++) {
        received += r->subs[i].received;
        duplicates += r->subs[i].duplicates;
        foreign += r->subs[i].foreign;
        if (r->subs[i].last_receive > last) last = r->subs[i].last_receive;
    }
    uint64_t *lat = malloc(sizeof *lat * (size_t)(received ? received : 1));
    for (int i = 0; i < o->subs; i++) {
        memcpy(lat + nlat, r->subs[i].latencies, sizeof *lat * (size_t)r->subs[i].received);
        nlat += r->subs[i].received;
    }
    qsort(lat, (size_t)nlat, sizeof *lat, compare_u64);
    qsort(r->lateness, (size_t)r->lateness_count, sizeof *r->lateness, compare_u64);
    long missing = expected - received;
    double rate = last > 0 ? (double)received / ((double)last / 1e9) : 0;
    bool lost = any_lost(r);

    printf("%s %d pub -> %d sub, QoS %d, %d B%s: delivered %ld of %ld (missing %ld, duplicates %ld%s) in %.2f s, "
           "%.0f msg/s\n",
           o->paced ? "paced" : "closed", o->pubs, o->subs, o->qos, PAYLOAD_SIZE, o->nagle ? ", Nagle on" : "",
           received, expected, missing, duplicates, lost ? ", A CONNECTION WAS LOST" : "", wall, rate);
    if (nlat)
        printf("latency p50 %.0f us, p99 %.0f us, max %.0f us\n", percentile_us(lat, nlat, .5),
               percentile_us(lat, nlat, .99), (double)lat[nlat - 1] / 1e3);
    if (r->lateness_count)
        printf("pacer lateness (send - deadline) p50 %.0f us, p99 %.0f us, max %.0f us%s\n",
               percentile_us(r->lateness, r->lateness_count, .5), percentile_us(r->lateness, r->lateness_count, .99),
               (double)r->lateness[r->lateness_count - 1] / 1e3,
               o->tick_us ? " (ticks: lateness is by design)" : "");
    double acked_s = r->acked_ns ? (double)(r->acked_ns - r->start_ns) / 1e9 : -1;
    if (r->acked_ns) printf("publishers acknowledged by %.2f s, last delivery at %.2f s\n", acked_s, (double)last / 1e9);
    else printf("publishers not all acknowledged when the subscribers finished (acked_s=-1), last delivery at %.2f s\n",
                (double)last / 1e9);
    printf("broker CPU %.2f s = %.2f us/msg; generator CPU %.2f s (%.0f%% of one core)\n", broker,
           received ? broker / (double)received * 1e6 : 0, gen, wall > 0 ? gen / wall * 100 : 0);
    printf("RESULT mode=%s pubs=%d subs=%d qos=%d expected=%ld delivered=%ld missing=%ld duplicates=%ld foreign=%ld "
           "lost=%d rate=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f late_p99_us=%.1f broker_cpu_s=%.3f "
           "cpu_us_per_msg=%.3f gen_cpu_s=%.3f gen_core=%.3f wall_s=%.3f acked_s=%.3f last_s=%.3f\n",
           o->paced ? "paced" : "closed", o->pubs, o->subs, o->qos, expected, received, missing, duplicates, foreign,
           lost, rate, percentile_us(lat, nlat, .5), percentile_us(lat, nlat, .99),
           nlat ? (double)lat[nlat - 1] / 1e3 : -1, percentile_us(r->lateness, r->lateness_count, .99), broker,
           received ? broker / (double)received * 1e6 : 0, gen, wall > 0 ? gen / wall : 0, wall, acked_s,
           (double)last / 1e9);

    for (int i = 0; i < o->pubs; i++) {
        mosquitto_disconnect(r->pubs[i].mosq);
        mosquitto_destroy(r->pubs[i].mosq);
    }
    for (int i = 0; i < o->subs; i++) {
        mosquitto_disconnect(r->subs[i].mosq);
        mosquitto_destroy(r->subs[i].mosq);
    }
    mosquitto_lib_cleanup();
    return (o->qos >= 1 && (missing > 0 || lost)) ? 1 : 0;
}

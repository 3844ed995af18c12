/* sse_reader: the load tool's EventSource subscribers in C, so that reading never limits a server.
 *
 * A Python subscriber costs several microseconds per read, and a server that sends one event per line (nchan)
 * then saturates it at ~150,000 deliveries/s on two cores. This reader opens every connection in one epoll
 * loop, de-chunks the bodies (and inflates them when the answer is gzip), finds each line's marker
 * M<pub>:<n>:<sent ns> and counts it exactly as bench/wire.py does: per connection and publisher, counters in order
 * with no gap; Sentra's seqs consecutive; latency = receipt - send time on CLOCK_MONOTONIC.
 *
 *     sse_reader HOST PORT REQUESTS LATENCIES [RESUMES]
 *
 * REQUESTS holds, per connection, a line "<channel> <length>" and then <length> bytes of the GET request.
 * With RESUMES > 0 a stream the server closes before it had every line opens again after RESUME_DELAY_NS, as
 * EventSource does, with Last-Event-ID set to the last seq it read (as wire.SseSubscriber does), at most RESUMES
 * times; its counts go on where they stopped.
 * Once every stream answered (or 60 s passed) it prints {"opened", "failed", "seconds", "errors"} on stdout.
 * Then it reads commands on stdin:
 *   expect <drain s> <stall s>, lines "<channel> <publisher> <count>", end: waits until every stream has every
 *       line (or nothing came for <stall> s, or <drain> s passed), writes every latency (int64 ns, native order)
 *       to LATENCIES and prints the tally as one JSON line;
 *   close: closes every stream, prints {"closed": seconds} and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_PUB 64
#define MAX_CHAN 4096
#define READ_SIZE 262144
#define RESUME_DELAY_NS 50000000LL /* wire.RESUME_DELAY */

typedef struct {
    int fd, chan, status, opened, chunked, ended, closing, cuts, resumes;
    int64_t resume_at;   /* when a cut stream opens again (0: not waiting to) */
    char *req;
    size_t req_len, sent, base_len; /* base_len: the request as given, before a resume added Last-Event-ID */
    char head[8192];
    size_t head_len;
    long chunk_left;     /* bytes of the current chunk still to come */
    int need_crlf;       /* the CRLF after a chunk's data is still to come */
    char size_line[64];  /* a chunk-size line cut by a read */
    size_t size_len;
    char *pay;           /* de-chunked payload not yet scanned (an unfinished line) */
    size_t pay_len, pay_cap;
    z_stream *gz;        /* the inflater of a gzip answer (Content-Encoding: gzip), else NULL */
    long next[MAX_PUB];  /* per publisher: the counter expected next */
    long count, events, gaps, disorder, skipped, seq_errors, next_seq;
} conn_t;

static conn_t *conns;
static int nconn, live_opened, failed, max_resumes, waiting_resumes;
static struct sockaddr_in server_addr;
static int64_t *lat;
static size_t lat_len, lat_cap;
static int64_t first_recv, last_recv;
static long expected[MAX_CHAN][MAX_PUB];
static int have_expect;
static char errors[5][200];
static int nerrors;

static struct timespec poll_pause = {0, 200000}; /* between polls when nothing was ready: 0.2 ms */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void note_error(const char *text) {
    if (nerrors < 5) snprintf(errors[nerrors++], sizeof errors[0], "%s", text);
}

static void add_latency(int64_t value) {
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 20;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) { perror("realloc"); exit(2); }
    }
    lat[lat_len++] = value;
}

static const char *skip_key(const char *p, const char *end, size_t key_len) {
    /* p points at a key of key_len bytes; returns the position after it and an optional space. */
    p += key_len;
    if (p < end && *p == ' ') p++;
    return p;
}

static long read_number(const char **pp, const char *end) {
    const char *p = *pp;
    long value = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') { value = value * 10 + (*p - '0'); p++; digits++; }
    *pp = p;
    return digits ? value : -1;
}

/* Count the markers and seqs in complete lines of payload (what wire.SseSubscriber._feed does). */
static void scan(conn_t *c, const char *buf, size_t len, int64_t now) {
    const char *end = buf + len, *p;
    int found = 0;
    for (p = buf; (p = memmem(p, end - p, "data:", 5)) != NULL; p += 5) c->events++;
    for (p = buf; (p = memmem(p, end - p, "\"message\":", 10)) != NULL;) {
        const char *q = skip_key(p, end, 10);
        p += 10;
        if (q + 2 > end || q[0] != '"' || q[1] != 'M') continue;
        q += 2;
        long pub = read_number(&q, end);
        if (q >= end || *q != ':') continue;
        q++;
        long n = read_number(&q, end);
        if (q >= end || *q != ':') continue;
        q++;
        const char *t = q;
        int64_t sent = 0;
        while (t < end && *t >= '0' && *t <= '9') { sent = sent * 10 + (*t - '0'); t++; }
        if (pub < 0 || pub >= MAX_PUB || n < 0) { note_error("marker out of range"); continue; }
        long want = c->next[pub];
        if (n != want) {
            if (n < want) { c->disorder++; continue; } /* late or repeated: either way not in order */
            c->gaps++;
            c->skipped += n - want;
        }
        c->next[pub] = n + 1;
        c->count++;
        add_latency(now - sent);
        found = 1;
    }
    for (p = buf; (p = memmem(p, end - p, "\"seq\":", 6)) != NULL;) {
        const char *q = skip_key(p, end, 6);
        p += 6;
        long seq = read_number(&q, end);
        if (seq < 0) continue;
        if (c->next_seq && seq != c->next_seq) c->seq_errors++;
        c->next_seq = seq + 1;
    }
    if (found) {
        if (!first_recv) first_recv = now;
        last_recv = now;
    }
}

static void feed_plain(conn_t *c, const char *data, size_t len, int64_t now) {
    if (c->pay_len + len > c->pay_cap) {
        c->pay_cap = (c->pay_len + len) * 2;
        c->pay = realloc(c->pay, c->pay_cap);
        if (!c->pay) { perror("realloc"); exit(2); }
    }
    memcpy(c->pay + c->pay_len, data, len);
    c->pay_len += len;
    char *cut = memrchr(c->pay, '\n', c->pay_len);
    if (!cut) return;
    size_t done = (size_t)(cut - c->pay) + 1;
    scan(c, c->pay, done, now);
    memmove(c->pay, c->pay + done, c->pay_len - done);
    c->pay_len -= done;
}

static char inflated[READ_SIZE];

static void feed(conn_t *c, const char *data, size_t len, int64_t now) {
    z_stream *z = c->gz;
    if (!z) { feed_plain(c, data, len, now); return; }
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    do {
        z->next_out = (Bytef *)inflated;
        z->avail_out = sizeof inflated;
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) { note_error("gzip: bad data"); return; }
        if (z->avail_out < sizeof inflated) feed_plain(c, inflated, sizeof inflated - z->avail_out, now);
        if (rc == Z_STREAM_END) return;
    } while (z->avail_in > 0 || z->avail_out == 0);
}

static void dechunk(conn_t *c, const char *data, size_t len, int64_t now) {
    size_t pos = 0;
    while (pos < len && !c->ended) {
        if (c->chunk_left) {
            size_t take = (size_t)c->chunk_left < len - pos ? (size_t)c->chunk_left : len - pos;
            feed(c, data + pos, take, now);
            pos += take;
            c->chunk_left -= take;
            if (c->chunk_left) break;
            c->need_crlf = 2;
        }
        while (c->need_crlf && pos < len) { c->need_crlf--; pos++; }
        if (c->need_crlf) break;
        while (pos < len && data[pos] != '\n') {
            if (c->size_len < sizeof c->size_line - 1) c->size_line[c->size_len++] = data[pos];
            pos++;
        }
        if (pos >= len) break;
        pos++; /* the '\n' */
        c->size_line[c->size_len] = 0;
        long size = strtol(c->size_line, NULL, 16);
        c->size_len = 0;
        if (size == 0) { c->ended = 1; break; }
        c->chunk_left = size;
    }
}

static void on_body(conn_t *c, const char *data, size_t len, int64_t now) {
    if (c->chunked) dechunk(c, data, len, now);
    else feed(c, data, len, now);
}

static void on_head(conn_t *c, const char *data, size_t len, int64_t now) {
    size_t room = sizeof c->head - 1 - c->head_len, take = len < room ? len : room;
    memcpy(c->head + c->head_len, data, take);
    c->head_len += take;
    c->head[c->head_len] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
        if (c->head_len >= sizeof c->head - 1) { c->status = -1; note_error("answer head too long"); failed++; }
        return;
    }
    c->status = atoi(c->head + 9);
    for (char *p = c->head; p < end; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    char *encoding = strstr(c->head, "transfer-encoding: chunked");
    c->chunked = encoding != NULL && encoding < end;
    char *coding = strstr(c->head, "content-encoding: gzip");
    if (coding != NULL && coding < end && !c->gz) {
        c->gz = calloc(1, sizeof *c->gz);
        if (!c->gz || inflateInit2(c->gz, 16 + MAX_WBITS) != Z_OK) { perror("inflateInit2"); exit(2); }
    }
    size_t head_bytes = (size_t)(end + 4 - c->head);
    size_t rest_from = head_bytes - (c->head_len - take); /* offset in data where the body starts */
    if (c->status == 200) {
        if (!c->opened) live_opened++;
        c->opened = 1;
    } else {
        if (c->opened) c->ended = 1; /* a resumed stream refused: it ends here */
        char text[200];
        snprintf(text, sizeof text, "status %d", c->status);
        note_error(text);
        failed++;
    }
    if (rest_from < len) on_body(c, data + rest_from, len - rest_from, now);
}

static char rbuf[READ_SIZE];
static int complete(conn_t *c);

static void on_readable(conn_t *c) {
    for (;;) {
        ssize_t got = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (got > 0) {
            int64_t now = now_ns();
            if (c->status == 0) on_head(c, rbuf, (size_t)got, now);
            else on_body(c, rbuf, (size_t)got, now);
            if ((size_t)got < sizeof rbuf) return;
            continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (got < 0 && errno == EINTR) continue;
        /* closed by the server (or an error) */
        int was_cut = c->status == 200 && !c->closing && !c->ended && !complete(c);
        if (c->status == 0) { failed++; note_error("closed before the answer"); c->status = -1; }
        close(c->fd);
        c->fd = -1;
        if (was_cut) {
            c->cuts++;
            if (c->resumes < max_resumes) {
                c->resume_at = now_ns() + RESUME_DELAY_NS;
                waiting_resumes++;
                return;
            }
        }
        c->ended = 1;
        return;
    }
}

static void on_writable(conn_t *c, int ep) {
    while (c->sent < c->req_len) {
        ssize_t put = send(c->fd, c->req + c->sent, c->req_len - c->sent, MSG_NOSIGNAL);
        if (put < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            failed++;
            note_error(strerror(errno));
            c->status = -1;
            c->ended = 1;
            return;
        }
        c->sent += (size_t)put;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int complete(conn_t *c) {
    if (!have_expect) return 0;
    for (int pub = 0; pub < MAX_PUB; pub++)
        if (c->next[pub] < expected[c->chan][pub]) return 0;
    return 1;
}

static long total_progress(void) {
    long sum = 0;
    for (int i = 0; i < nconn; i++) sum += conns[i].count + conns[i].resumes; /* a resumed stream is progress too */
    return sum;
}

/* Open connection c (again): a socket to the server that sends its request once writable. */
static int connect_stream(int ep, conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 && errno != EINPROGRESS) {
        note_error(strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* Open cut streams whose delay has passed, from the seq after the last one read, with the counts kept. */
static void resume_due(int ep) {
    int64_t now = now_ns();
    for (int i = 0; i < nconn && waiting_resumes; i++) {
        conn_t *c = &conns[i];
        if (!c->resume_at || c->resume_at > now) continue;
        c->resume_at = 0;
        waiting_resumes--;
        c->resumes++;
        c->status = 0;
        c->head_len = 0;
        c->chunked = 0;
        c->chunk_left = 0;
        c->need_crlf = 0;
        c->size_len = 0;
        c->pay_len = 0; /* an unfinished line of the cut stream comes again */
        if (c->gz) { inflateEnd(c->gz); free(c->gz); c->gz = NULL; }
        /* The request ends with an empty line; Last-Event-ID goes before it (wire.SseSubscriber._reconnect). */
        size_t base = c->req_len;
        if (c->next_seq) {
            char header[64];
            int n = snprintf(header, sizeof header, "Last-Event-ID: %ld\r\n\r\n", c->next_seq - 1);
            if (!c->base_len) c->base_len = c->req_len;
            base = c->base_len - 2;
            c->req = realloc(c->req, base + (size_t)n);
            if (!c->req) { perror("realloc"); exit(2); }
            memcpy(c->req + base, header, (size_t)n);
            base += (size_t)n;
        }
        c->req_len = base;
        c->sent = 0;
        if (connect_stream(ep, c) < 0) c->ended = 1;
    }
}

/* Serve the sockets until `until` (ns) or, when stop_when is set, until it returns true. */
static void pump(int ep, int64_t until, int (*stop_when)(void), int watch_stdin) {
    struct epoll_event evs[512];
    while (now_ns() < until) {
        if (stop_when && stop_when()) return;
        if (waiting_resumes) resume_due(ep);
        /* Poll, never wait inside epoll: a reader asleep there must be woken by each send, and on loopback the
           sender pays for that wake-up, which no remote client costs a server. */
        int n = epoll_wait(ep, evs, 512, 0);
        if (n == 0) {
            nanosleep(&poll_pause, NULL);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                if (watch_stdin) return;
                continue;
            }
            conn_t *c = &conns[evs[i].data.u32];
            if (c->fd < 0) continue;
            if (evs[i].events & EPOLLOUT) on_writable(c, ep);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}

static int all_answered(void) {
    for (int i = 0; i < nconn; i++)
        if (conns[i].status == 0) return 0;
    return 1;
}

static int64_t drain_stall_ns, drain_last_change;
static long drain_last_total;

static int drained(void) {
    int waiting = 0;
    for (int i = 0; i < nconn; i++)
        if (conns[i].opened && !conns[i].ended && !complete(&conns[i])) waiting = 1;
    if (!waiting) return 1;
    long total = total_progress();
    int64_t now = now_ns();
    if (total != drain_last_total) { drain_last_total = total; drain_last_change = now; }
    return now - drain_last_change > drain_stall_ns;
}

static void print_errors(void) {
    printf("\"errors\":[");
    for (int i = 0; i < nerrors; i++) {
        printf("%s\"", i ? "," : "");
        for (char *p = errors[i]; *p; p++) if (*p != '"' && *p != '\\') putchar(*p);
        printf("\"");
    }
    printf("]");
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) { fprintf(stderr, "usage: sse_reader HOST PORT REQUESTS LATENCIES [RESUMES]\n"); return 2; }
    max_resumes = argc == 6 ? atoi(argv[5]) : 0;
    prctl(PR_SET_TIMERSLACK, 1000UL); /* wake within ~1 µs of the pause, not the default 50 µs */
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    FILE *reqs = fopen(argv[3], "rb");
    if (!reqs) { perror(argv[3]); return 2; }
    size_t cap = 64;
    conns = calloc(cap, sizeof *conns);
    int chan;
    size_t len;
    while (fscanf(reqs, "%d %zu", &chan, &len) == 2) {
        fgetc(reqs);
        if (nconn == (int)cap) { cap *= 2; conns = realloc(conns, cap * sizeof *conns); memset(conns + nconn, 0, (cap - nconn) * sizeof *conns); }
        conn_t *c = &conns[nconn++];
        if (chan < 0 || chan >= MAX_CHAN) { fprintf(stderr, "channel %d out of range\n", chan); return 2; }
        c->chan = chan;
        c->req = malloc(len);
        c->req_len = len;
        if (fread(c->req, 1, len, reqs) != len) { fprintf(stderr, "short request\n"); return 2; }
    }
    fclose(reqs);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &server_addr.sin_addr);
    int ep = epoll_create1(0);
    struct epoll_event sin = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sin);
    int64_t started = now_ns();
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        if (connect_stream(ep, c) < 0) {
            failed++;
            c->status = -1;
        }
    }
    pump(ep, started + 60000000000LL, all_answered, 0);
    printf("{\"opened\":%d,\"failed\":%d,\"seconds\":%.6f,", live_opened, nconn - live_opened,
           (now_ns() - started) / 1e9);
    print_errors();
    printf("}\n");
    fflush(stdout);
    char line[256];
    for (;;) {
        /* Keep reading the streams while the parent publishes; a command on stdin wakes the loop. */
        pump(ep, INT64_MAX, NULL, 1);
        if (!fgets(line, sizeof line, stdin)) return 0;
        if (strncmp(line, "expect", 6) == 0) {
            double drain = 20, stall = 5;
            sscanf(line + 6, "%lf %lf", &drain, &stall);
            memset(expected, 0, sizeof expected);
            while (fgets(line, sizeof line, stdin) && strncmp(line, "end", 3) != 0) {
                int ch, pub;
                long count;
                if (sscanf(line, "%d %d %ld", &ch, &pub, &count) == 3 && ch >= 0 && ch < MAX_CHAN && pub >= 0 &&
                    pub < MAX_PUB)
                    expected[ch][pub] = count;
            }
            have_expect = 1;
            drain_stall_ns = (int64_t)(stall * 1e9);
            drain_last_change = now_ns();
            drain_last_total = -1;
            pump(ep, now_ns() + (int64_t)(drain * 1e9), drained, 0);
            long delivered = 0, exp = 0, lost = 0, gaps = 0, disorder = 0, seq_errors = 0, cut = 0, resumed = 0;
            long events = 0;
            int subs = 0;
            for (int i = 0; i < nconn; i++) {
                conn_t *c = &conns[i];
                if (!c->opened) continue;
                subs++;
                delivered += c->count;
                events += c->events;
                gaps += c->gaps;
                disorder += c->disorder;
                seq_errors += c->seq_errors;
                cut += c->cuts;
                resumed += c->resumes;
                lost += c->skipped;
                for (int pub = 0; pub < MAX_PUB; pub++) {
                    exp += expected[c->chan][pub];
                    if (c->next[pub] < expected[c->chan][pub]) lost += expected[c->chan][pub] - c->next[pub];
                }
            }
            FILE *out = fopen(argv[4], "wb");
            if (!out || fwrite(lat, sizeof *lat, lat_len, out) != lat_len) { perror(argv[4]); return 2; }
            fclose(out);
            printf("{\"subscribers\":%d,\"delivered\":%ld,\"expected\":%ld,\"lost\":%ld,\"gaps\":%ld,"
                   "\"disorder\":%ld,\"repeats\":0,\"seq_errors\":%ld,\"cut\":%ld,\"resumed\":%ld,\"events\":%ld,"
                   "\"strict_count\":0,\"first_recv\":%lld,\"last_recv\":%lld,\"latencies\":%zu,",
                   subs, delivered, exp, lost, gaps, disorder, seq_errors, cut, resumed, events, (long long)first_recv,
                   (long long)last_recv, lat_len);
            print_errors();
            printf("}\n");
            fflush(stdout);
        } else if (strncmp(line, "close", 5) == 0) {
            int64_t began = now_ns();
            for (int i = 0; i < nconn; i++) {
                conns[i].closing = 1;
                conns[i].resume_at = 0;
                if (conns[i].fd >= 0) { close(conns[i].fd); conns[i].fd = -1; }
            }
            printf("{\"closed\":%.6f}\n", (now_ns() - began) / 1e9);
            fflush(stdout);
            return 0;
        }
    }
}

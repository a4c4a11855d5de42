/* Tiny HTTP/1.1 load generator for the storm scenario.
 *
 * loadgen HOST PORT PATH BODY_FILE CONNECTIONS SECONDS EXPECT_STATUS
 *
 * Opens CONNECTIONS keep-alive connections (one thread each); every thread POSTs the
 * body, reads the whole response (Content-Length or chunked), counts responses with
 * EXPECT_STATUS as ok and the rest as bad, and repeats until SECONDS have passed.
 * Only responses completed before the deadline count. Prints one JSON line:
 * {"ok": N, "bad": N, "errors": N, "seconds": S, "first_bad_status": C}
 * Built by benchmarks/loadgen.py with the system C compiler; the same binary loads both
 * daemons, and it needs far less CPU than the daemons it measures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host;
static int port;
static char *request;
static size_t request_len;
static double start_time, deadline;
static int expect_status;

struct worker {
    pthread_t thread;
    long ok, bad, errors;
    int first_bad_status;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int connect_to(void) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Case-insensitive search for a header; returns a pointer to its value or NULL. */
static const char *find_header(const char *head, size_t head_len, const char *name) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i + nlen + 1 < head_len; i++) {
        if (head[i] == '\n' && strncasecmp(head + i + 1, name, nlen) == 0) {
            const char *v = head + i + 1 + nlen;
            while (*v == ' ') v++;
            return v;
        }
    }
    return NULL;
}

#define BUF_SIZE (1 << 20)

/* Reads one response; returns its status, 0 on a connection error. */
static int read_response(int fd, char *buf, size_t *have) {
    size_t head_len = 0;
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            head_len = (size_t)(end - buf) + 4;
            break;
        }
        if (*have >= BUF_SIZE) return 0;
        ssize_t n = read(fd, buf + *have, BUF_SIZE - *have);
        if (n <= 0) return 0;
        *have += (size_t)n;
    }
    int status = 0;
    if (sscanf(buf, "HTTP/%*s %d", &status) != 1) return 0;
    const char *cl = find_header(buf, head_len, "content-length:");
    const char *te = find_header(buf, head_len, "transfer-encoding:");
    size_t total;
    if (cl) {
        total = head_len + (size_t)strtoull(cl, NULL, 10);
        while (*have < total) {
            if (*have >= BUF_SIZE) return 0;
            ssize_t n = read(fd, buf + *have, BUF_SIZE - *have);
            if (n <= 0) return 0;
            *have += (size_t)n;
        }
    } else if (te && strncasecmp(te, "chunked", 7) == 0) {
        for (;;) {
            char *end = memmem(buf + head_len, *have - head_len, "0\r\n\r\n", 5);
            if (end && (end == buf + head_len || end[-1] == '\n')) {
                total = (size_t)(end - buf) + 5;
                break;
            }
            if (*have >= BUF_SIZE) return 0;
            ssize_t n = read(fd, buf + *have, BUF_SIZE - *have);
            if (n <= 0) return 0;
            *have += (size_t)n;
        }
    } else {
        total = head_len;  /* no body */
    }
    memmove(buf, buf + total, *have - total);
    *have -= total;
    return status;
}

static void *run(void *arg) {
    struct worker *w = arg;
    char *buf = malloc(BUF_SIZE);
    size_t have = 0;
    int fd = -1;
    while (now() < deadline) {
        if (fd < 0) {
            fd = connect_to();
            have = 0;
            if (fd < 0) {
                w->errors++;
                usleep(10000);
                continue;
            }
        }
        if (write_all(fd, request, request_len) < 0) {
            w->errors++;
            close(fd);
            fd = -1;
            continue;
        }
        int status = read_response(fd, buf, &have);
        if (status == 0) {
            w->errors++;
            close(fd);
            fd = -1;
            continue;
        }
        if (now() > deadline) break;
        if (status == expect_status) {
            w->ok++;
        } else {
            w->bad++;
            if (!w->first_bad_status) w->first_bad_status = status;
        }
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: loadgen HOST PORT PATH BODY_FILE CONNECTIONS SECONDS EXPECT_STATUS\n");
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    const char *path = argv[3];
    int conns = atoi(argv[5]);
    double seconds = atof(argv[6]);
    expect_status = atoi(argv[7]);

    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror(argv[4]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long body_len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *body = malloc((size_t)body_len + 1);
    if (fread(body, 1, (size_t)body_len, f) != (size_t)body_len) {
        perror("read body");
        return 2;
    }
    fclose(f);
    request = malloc((size_t)body_len + 512);
    int head = snprintf(request, 512,
                        "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: */*\r\n"
                        "Content-Type: application/json\r\nContent-Length: %ld\r\n\r\n",
                        path, host, port, body_len);
    memcpy(request + head, body, (size_t)body_len);
    request_len = (size_t)head + (size_t)body_len;

    struct worker *workers = calloc((size_t)conns, sizeof *workers);
    start_time = now();
    deadline = start_time + seconds;
    for (int i = 0; i < conns; i++) pthread_create(&workers[i].thread, NULL, run, &workers[i]);
    long ok = 0, bad = 0, errors = 0;
    int first_bad = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(workers[i].thread, NULL);
        ok += workers[i].ok;
        bad += workers[i].bad;
        errors += workers[i].errors;
        if (!first_bad) first_bad = workers[i].first_bad_status;
    }
    printf("{\"ok\": %ld, \"bad\": %ld, \"errors\": %ld, \"seconds\": %.6f, \"first_bad_status\": %d}\n",
           ok, bad, errors, seconds, first_bad);
    return 0;
}

/*
 * geoflux-sink: many fan-out sink subscribers in one small native process (the fan-out benchmark's
 * `--sinks native`, load-tests/lib/native-sinks.ts).
 *
 * Each sink is a real socket.io connection to a gateway's tile rooms: an HTTP upgrade to
 * Engine.IO v4 over WebSocket, the rooms' MessagePack CONNECT carrying the token, a `subscribe`
 * event and its ack; from then on it only counts the binary messages (room frames) it receives,
 * answers Engine.IO pings and WebSocket pings, and never decodes a frame. The gateway serves it
 * exactly as it serves a MapClient in the same room. The packets (CONNECT with the token, the
 * subscribe event) are built by the harness in Node with the project's own encoder and arrive here
 * as hex, so this file knows nothing of MessagePack beyond finding a reply's `type` and `ok`.
 *
 * Why native: a Node sink costs 12-20 us per received frame (a socket read through libuv, streams
 * and `ws`), so 800 sinks at 36 frames/s took 0.4-0.6 of this 2-core machine's cores away from the
 * gateways they measure. Here a frame costs one read() (often fewer: the kernel hands over
 * whatever has arrived) and a header parse.
 *
 * Protocol with the harness, one line each way (stdin / stdout):
 *   sink <ipv4> <port> <connect-hex> <subscribe-hex>   add a sink (any number, before `open`)
 *   open <concurrency> <timeout-ms>                     connect them all -> `opened <ok> <failed> [first error]`
 *   pace <ms>            read at most every <ms> (0: as frames arrive)
 *   measure on|off       start/stop counting           -> `measured <c0> <c1> ...` (-1: never subscribed)
 *   close                close every socket, then exit -> `closed`
 * End of stdin (the harness is gone) also ends the process.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { IDLE, CONNECTING, HTTP, WAIT_OPEN, WAIT_CONNECT, WAIT_ACK, SUBSCRIBED, DEAD };

typedef struct {
  int fd;
  enum state st;
  struct sockaddr_in addr;
  unsigned char *connect_pkt, *sub_pkt;
  size_t connect_len, sub_len;
  unsigned char *buf;
  size_t len, cap;
  long long frames;
  long long deadline_ms;
  int was_subscribed;
} Sink;

static Sink *sinks;
static size_t nsinks, capsinks;
static int ep;
static int counting;
static char first_error[256];
static size_t failed, subscribed, inflight, next_to_open;
static int opening, concurrency = 64;
static long long timeout_ms = 10000;
/*
 * Reading pace once subscribed: with p > 0 the loop sleeps p ms between two epoll_waits, so a
 * read takes in every frame that arrived meanwhile (the kernel keeps them; the gateway's writes
 * are the same). On a 2-core box the sinks' reads are kernel work taken from the gateways they
 * measure: at 30k frames/s, one read per frame cost 0.2 core, 90 % of it in the kernel.
 */
static long pace_ms;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(Sink *s, const char *why) {
  if (s->st == DEAD) return;
  int was_open = s->st != IDLE && s->st != SUBSCRIBED;
  if (s->st == SUBSCRIBED) subscribed--;
  if (s->fd >= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL); close(s->fd); s->fd = -1; }
  s->st = DEAD;
  if (was_open) inflight--;
  failed++;
  if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", why);
}

static unsigned char *unhex(const char *h, size_t *out_len) {
  size_t n = strlen(h) / 2;
  unsigned char *b = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(h + 2 * i, "%2x", &v) != 1) { free(b); return NULL; }
    b[i] = (unsigned char)v;
  }
  *out_len = n;
  return b;
}

/* Sends one masked client frame (RFC 6455 5.3); small control-plane messages only. */
static int send_frame(Sink *s, int opcode, const unsigned char *p, size_t n) {
  unsigned char hdr[14];
  size_t h = 0;
  hdr[h++] = (unsigned char)(0x80 | opcode);
  if (n < 126) hdr[h++] = (unsigned char)(0x80 | n);
  else if (n < 65536) { hdr[h++] = 0x80 | 126; hdr[h++] = (unsigned char)(n >> 8); hdr[h++] = (unsigned char)n; }
  else return -1;
  uint32_t r = (uint32_t)rand();
  unsigned char mask[4] = { (unsigned char)r, (unsigned char)(r >> 8), (unsigned char)(r >> 16), (unsigned char)(r >> 24) };
  memcpy(hdr + h, mask, 4);
  h += 4;
  unsigned char *out = malloc(h + n);
  memcpy(out, hdr, h);
  for (size_t i = 0; i < n; i++) out[h + i] = p[i] ^ mask[i & 3];
  ssize_t w = send(s->fd, out, h + n, MSG_NOSIGNAL);
  free(out);
  return w == (ssize_t)(h + n) ? 0 : -1;
}

/* The value of a fixstr key `key` in a MessagePack map (the first byte after the key), or -1. */
static int msgpack_after_key(const unsigned char *p, size_t n, const char *key) {
  size_t k = strlen(key);
  for (size_t i = 0; i + 1 + k < n; i++) {
    if (p[i] == (0xa0 | k) && memcmp(p + i + 1, key, k) == 0) return p[i + 1 + k];
  }
  return -1;
}

static void on_message(Sink *s, int opcode, const unsigned char *p, size_t n) {
  if (opcode == 2) {
    if (s->st == SUBSCRIBED) { if (counting) s->frames++; return; }
    int type = msgpack_after_key(p, n, "type");
    if (s->st == WAIT_CONNECT) {
      if (type == 0) {
        if (send_frame(s, 2, s->sub_pkt, s->sub_len) < 0) { fail(s, "sink: could not send the subscribe"); return; }
        s->st = WAIT_ACK;
      } else if (type == 4) fail(s, "sink: connect refused (CONNECT_ERROR)");
    } else if (s->st == WAIT_ACK && type == 3) {
      if (msgpack_after_key(p, n, "ok") == 0xc3) { s->st = SUBSCRIBED; s->was_subscribed = 1; subscribed++; inflight--; }
      else fail(s, "sink: subscribe refused");
    }
  } else if (opcode == 1) {
    if (n >= 1 && p[0] == '0' && s->st == WAIT_OPEN) {
      if (send_frame(s, 2, s->connect_pkt, s->connect_len) < 0) { fail(s, "sink: could not send the CONNECT"); return; }
      s->st = WAIT_CONNECT;
    } else if (n == 1 && p[0] == '2') {
      unsigned char pong = '3';
      send_frame(s, 1, &pong, 1);
    }
  } else if (opcode == 9) {
    send_frame(s, 10, p, n);
  } else if (opcode == 8) {
    fail(s, "sink: the gateway closed the WebSocket");
  }
}

/* Consumes the complete WebSocket frames in s->buf. */
static void parse_frames(Sink *s) {
  size_t off = 0;
  while (s->st != DEAD) {
    size_t avail = s->len - off;
    if (avail < 2) break;
    const unsigned char *b = s->buf + off;
    size_t h = 2;
    uint64_t n = b[1] & 0x7f;
    if (b[1] & 0x80) { fail(s, "sink: masked frame from the server"); return; }
    if (n == 126) { if (avail < 4) break; n = ((uint64_t)b[2] << 8) | b[3]; h = 4; }
    else if (n == 127) {
      if (avail < 10) break;
      n = 0;
      for (int i = 0; i < 8; i++) n = (n << 8) | b[2 + i];
      h = 10;
    }
    if (avail < h + n) {
      if (h + n > s->cap) {
        size_t cap = s->cap;
        while (cap < h + n) cap *= 2;
        memmove(s->buf, s->buf + off, avail);
        s->len = avail;
        off = 0;
        s->buf = realloc(s->buf, cap);
        s->cap = cap;
      }
      break;
    }
    on_message(s, b[0] & 0x0f, b + h, (size_t)n);
    off += h + n;
  }
  if (s->st == DEAD) return;
  if (off > 0) { memmove(s->buf, s->buf + off, s->len - off); s->len -= off; }
}

static void on_http(Sink *s) {
  unsigned char *end = memmem(s->buf, s->len, "\r\n\r\n", 4);
  if (!end) return;
  if (s->len < 12 || memcmp(s->buf, "HTTP/1.1 101", 12) != 0) {
    char why[160];
    size_t l = (size_t)(end - s->buf) < 100 ? (size_t)(end - s->buf) : 100;
    snprintf(why, sizeof why, "sink: upgrade refused: %.*s", (int)l, s->buf);
    for (char *c = why; *c; c++) if (*c == '\r' || *c == '\n') *c = ' ';
    fail(s, why);
    return;
  }
  size_t rest = s->len - (size_t)(end + 4 - s->buf);
  memmove(s->buf, end + 4, rest);
  s->len = rest;
  s->st = WAIT_OPEN;
  parse_frames(s);
}

static void start_one(Sink *s) {
  s->st = CONNECTING;
  s->deadline_ms = now_ms() + timeout_ms;
  inflight++;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (s->fd < 0) { fail(s, "sink: socket() failed (open-files limit?)"); return; }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s->fd, (struct sockaddr *)&s->addr, sizeof s->addr) < 0 && errno != EINPROGRESS) { fail(s, "sink: connect() failed"); return; }
  struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = s };
  epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void on_writable(Sink *s) {
  int err = 0;
  socklen_t l = sizeof err;
  getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
  if (err) { fail(s, "sink: connection refused"); return; }
  char req[512];
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &s->addr.sin_addr, ip, sizeof ip);
  int n = snprintf(req, sizeof req,
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: Z2VvZmx1eC1zaW5rLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", ip, ntohs(s->addr.sin_port));
  if (send(s->fd, req, (size_t)n, MSG_NOSIGNAL) != n) { fail(s, "sink: could not send the upgrade"); return; }
  s->st = HTTP;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
  epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void on_readable(Sink *s) {
  if (s->len == s->cap) { s->cap *= 2; s->buf = realloc(s->buf, s->cap); }
  ssize_t r = read(s->fd, s->buf + s->len, s->cap - s->len);
  if (r == 0) { fail(s, "sink: the gateway closed the connection"); return; }
  if (r < 0) { if (errno != EAGAIN && errno != EINTR) fail(s, "sink: read error"); return; }
  s->len += (size_t)r;
  if (s->st == HTTP) on_http(s); else parse_frames(s);
}

static void reply_opened(void) {
  printf("opened %zu %zu%s%s\n", subscribed, failed, first_error[0] ? " " : "", first_error);
  fflush(stdout);
}

static void open_more(void) {
  while (opening && inflight < (size_t)concurrency && next_to_open < nsinks) start_one(&sinks[next_to_open++]);
  if (opening && next_to_open == nsinks && inflight == 0) { opening = 0; reply_opened(); }
}

static void on_command(char *line) {
  if (strncmp(line, "sink ", 5) == 0) {
    char ip[64], ch[8192], sh[8192];
    int port;
    if (sscanf(line + 5, "%63s %d %8191s %8191s", ip, &port, ch, sh) != 4) { printf("error bad sink line\n"); fflush(stdout); return; }
    if (nsinks == capsinks) { capsinks = capsinks ? capsinks * 2 : 256; sinks = realloc(sinks, capsinks * sizeof *sinks); }
    Sink *s = &sinks[nsinks++];
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->st = IDLE;
    s->addr.sin_family = AF_INET;
    s->addr.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &s->addr.sin_addr);
    s->connect_pkt = unhex(ch, &s->connect_len);
    s->sub_pkt = unhex(sh, &s->sub_len);
    s->cap = 16384;
    s->buf = malloc(s->cap);
  } else if (strncmp(line, "open", 4) == 0) {
    sscanf(line + 4, "%d %lld", &concurrency, &timeout_ms);
    if (concurrency < 1) concurrency = 1;
    opening = 1;
    open_more();
  } else if (strncmp(line, "pace ", 5) == 0) {
    pace_ms = atol(line + 5);
    printf("paced %ld\n", pace_ms);
    fflush(stdout);
  } else if (strncmp(line, "measure ", 8) == 0) {
    counting = strcmp(line + 8, "on") == 0;
    fputs("measured", stdout);
    for (size_t i = 0; i < nsinks; i++) printf(" %lld", sinks[i].was_subscribed ? sinks[i].frames : -1LL);
    fputc('\n', stdout);
    fflush(stdout);
  } else if (strcmp(line, "close") == 0) {
    for (size_t i = 0; i < nsinks; i++) {
      Sink *s = &sinks[i];
      if (s->fd < 0) continue;
      unsigned char code[2] = { 0x03, 0xe8 }; /* 1000: normal closure */
      send_frame(s, 8, code, 2);
      close(s->fd);
    }
    printf("closed\n");
    fflush(stdout);
    exit(0);
  }
}

int main(void) {
  ep = epoll_create1(0);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event in = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in);
  static char line[1 << 16];
  size_t line_len = 0;
  struct epoll_event evs[256];
  srand((unsigned)now_ms());
  for (;;) {
    if (!opening && pace_ms > 0) {
      struct timespec p = { pace_ms / 1000, (pace_ms % 1000) * 1000000L };
      nanosleep(&p, NULL);
    }
    /* Paced: one sweep takes in every ready socket (epoll hands over 256 at a time), so each
       sink is read once per pace and the harness's commands wait at most one pace. */
    int n = epoll_wait(ep, evs, 256, opening ? 100 : pace_ms > 0 ? 0 : 1000);
    for (size_t handled = 0; n > 0;) {
    for (int i = 0; i < n; i++) {
      Sink *s = evs[i].data.ptr;
      if (!s) {
        ssize_t r = read(0, line + line_len, sizeof line - 1 - line_len);
        if (r == 0) exit(0);
        if (r < 0) continue;
        line_len += (size_t)r;
        char *nl;
        while ((nl = memchr(line, '\n', line_len))) {
          *nl = 0;
          on_command(line);
          size_t used = (size_t)(nl + 1 - line);
          memmove(line, nl + 1, line_len - used);
          line_len -= used;
        }
        continue;
      }
      if (s->st == DEAD) continue;
      if (s->st == CONNECTING) {
        if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(s);
        continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(s);
    }
    handled += (size_t)n;
    if (n < 256 || opening || pace_ms <= 0 || handled > nsinks) break;
    n = epoll_wait(ep, evs, 256, 0);
    }
    if (opening) {
      long long t = now_ms();
      for (size_t i = 0; i < next_to_open; i++) {
        Sink *s = &sinks[i];
        if (s->st != SUBSCRIBED && s->st != DEAD && t > s->deadline_ms) fail(s, "sink: not subscribed in time");
      }
      open_more();
    }
  }
}

/*
 * A benchmark reference point, not part of hallpass: the ceiling of a PostgreSQL proxy whose data
 * path runs natively inside the Node.js process. It answers SSLRequest, terminates the client's TLS
 * with OpenSSL (the copy linked into Node itself), and copies bytes to the target and back from
 * libuv poll callbacks on Node's own event loop: no Node stream, no TLSWrap. Optionally it hands each
 * chunk it read to a JavaScript function (one call per read, the bytes in a per-session
 * ArrayBuffer, no copy) before forwarding it: the cost a native data path pays to keep the
 * gateway's statement tracking in JavaScript.
 *
 * Each direction has one buffer; while its bytes wait for the other side, that direction stops
 * reading (backpressure). Error handling is what a benchmark needs: any failure closes the session.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <stdint.h>

#define BUF (32 * 1024)

enum { PRE, HANDSHAKE, RELAY, CLOSING };

typedef struct session {
  napi_env env;
  SSL *ssl;
  int cfd, ufd;
  uv_poll_t cpoll, upoll;
  int state;
  int pre_len;
  unsigned char pre[8];
  /* client -> upstream plaintext waiting to be written */
  unsigned char *c2u;
  size_t c2u_off, c2u_len;
  /* upstream -> client plaintext waiting for SSL_write */
  unsigned char *u2c;
  size_t u2c_off, u2c_len;
  int ssl_read_wants_write, ssl_write_wants_read;
  int handshake_wants_write;
  int closed_handles;
  int closing;
  int cmask, umask;
  napi_ref cb;
  napi_ref cbuf, ubuf;
  napi_ref resource;
  napi_async_context actx;
} session;

static void update(session *s);
static void close_session(session *s);

static void call_js(session *s, int dir, size_t len) {
  if (s->cb == NULL) return;
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[2], res;
  napi_get_reference_value(env, s->cb, &cb);
  napi_get_reference_value(env, s->resource, &recv);
  napi_create_int32(env, dir, &argv[0]);
  napi_create_uint32(env, (uint32_t)len, &argv[1]);
  if (napi_make_callback(env, s->actx, recv, cb, 2, argv, &res) != napi_ok) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    s->state = CLOSING;
  }
  napi_close_handle_scope(env, scope);
}

/* Writes pending client->upstream bytes; returns 0 when all are written or would block, -1 on error. */
static int flush_c2u(session *s) {
  while (s->c2u_off < s->c2u_len) {
    ssize_t n = write(s->ufd, s->c2u + s->c2u_off, s->c2u_len - s->c2u_off);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    s->c2u_off += (size_t)n;
  }
  s->c2u_off = s->c2u_len = 0;
  return 0;
}

/* SSL_writes pending upstream->client bytes; 0 when done or blocked, -1 on error. */
static int flush_u2c(session *s) {
  s->ssl_write_wants_read = 0;
  while (s->u2c_off < s->u2c_len) {
    int n = SSL_write(s->ssl, s->u2c + s->u2c_off, (int)(s->u2c_len - s->u2c_off));
    if (n <= 0) {
      int e = SSL_get_error(s->ssl, n);
      if (e == SSL_ERROR_WANT_WRITE) return 0;
      if (e == SSL_ERROR_WANT_READ) {
        s->ssl_write_wants_read = 1;
        return 0;
      }
      return -1;
    }
    s->u2c_off += (size_t)n;
  }
  s->u2c_off = s->u2c_len = 0;
  return 0;
}

/* Reads from the client while the client->upstream buffer is free; 0 ok, -1 closed or failed. */
static int read_client(session *s) {
  s->ssl_read_wants_write = 0;
  while (s->c2u_len == 0 && s->state == RELAY) {
    int n = SSL_read(s->ssl, s->c2u, BUF);
    if (n <= 0) {
      int e = SSL_get_error(s->ssl, n);
      if (e == SSL_ERROR_WANT_READ) return 0;
      if (e == SSL_ERROR_WANT_WRITE) {
        s->ssl_read_wants_write = 1;
        return 0;
      }
      return -1;
    }
    call_js(s, 0, (size_t)n);
    s->c2u_len = (size_t)n;
    if (flush_c2u(s) < 0) return -1;
    /* More only if OpenSSL holds some already; otherwise the poll says when (no read to EAGAIN). */
    if (!SSL_has_pending(s->ssl)) break;
  }
  return 0;
}

/* Reads from the target while the upstream->client buffer is free. */
static int read_upstream(session *s) {
  while (s->u2c_len == 0 && s->state == RELAY) {
    ssize_t n = read(s->ufd, s->u2c, BUF);
    if (n == 0) return -1;
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    call_js(s, 1, (size_t)n);
    s->u2c_len = (size_t)n;
    if (flush_u2c(s) < 0) return -1;
    if ((size_t)n < BUF) break;
  }
  return 0;
}

static int step_handshake(session *s) {
  s->handshake_wants_write = 0;
  int r = SSL_accept(s->ssl);
  if (r == 1) {
    s->state = RELAY;
    return 0;
  }
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ) return 0;
  if (e == SSL_ERROR_WANT_WRITE) {
    s->handshake_wants_write = 1;
    return 0;
  }
  return -1;
}

static int step_pre(session *s) {
  while (s->pre_len < 8) {
    ssize_t n = read(s->cfd, s->pre + s->pre_len, (size_t)(8 - s->pre_len));
    if (n == 0) return -1;
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    s->pre_len += (int)n;
  }
  static const unsigned char ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
  if (memcmp(s->pre, ssl_request, 8) != 0) return -1;
  if (write(s->cfd, "S", 1) != 1) return -1;
  s->state = HANDSHAKE;
  return step_handshake(s);
}

/* What an event on one socket (or the start, h == NULL) made possible. */
static void pump(session *s, uv_poll_t *h, int events) {
  int bad = 0;
  if (s->state == PRE) {
    bad = step_pre(s);
    if (!bad && s->state == RELAY) bad = read_client(s);
  } else if (s->state == HANDSHAKE) {
    bad = step_handshake(s);
    /* With read-ahead, the client's first bytes may already sit in OpenSSL. */
    if (!bad && s->state == RELAY) bad = read_client(s);
  } else if (s->state == RELAY) {
    int c2u_was = s->c2u_len != 0, u2c_was = s->u2c_len != 0;
    if (s->c2u_len && h == &s->upoll && (events & UV_WRITABLE)) bad = flush_c2u(s);
    if (!bad && s->u2c_len && h == &s->cpoll) bad = flush_u2c(s);
    /* A direction just unblocked may hold decrypted bytes no poll will announce. */
    if (!bad && ((h == &s->cpoll && (events & UV_READABLE)) || (c2u_was && !s->c2u_len) || (h == &s->cpoll && s->ssl_read_wants_write))) bad = read_client(s);
    if (!bad && ((h == &s->upoll && (events & UV_READABLE)) || (u2c_was && !s->u2c_len))) bad = read_upstream(s);
  }
  if (bad || s->state == CLOSING) close_session(s);
  else update(s);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  session *s = h->data;
  if (s->state == CLOSING) return;
  if (status < 0) {
    close_session(s);
    return;
  }
  pump(s, h, events);
}

static void update(session *s) {
  int c = 0, u = 0;
  if (s->state == PRE) c = UV_READABLE;
  else if (s->state == HANDSHAKE) c = s->handshake_wants_write ? UV_WRITABLE : UV_READABLE;
  else {
    if (s->c2u_len == 0 && !s->ssl_read_wants_write) c |= UV_READABLE;
    if (s->ssl_read_wants_write) c |= UV_WRITABLE;
    if (s->u2c_len) c |= s->ssl_write_wants_read ? UV_READABLE : UV_WRITABLE;
    if (s->u2c_len == 0) u |= UV_READABLE;
    if (s->c2u_len) u |= UV_WRITABLE;
  }
  /* Every uv_poll_start costs an epoll_ctl: only on a change. */
  if (c != s->cmask) uv_poll_start(&s->cpoll, c, on_poll);
  if (u != s->umask) {
    if (u) uv_poll_start(&s->upoll, u, on_poll);
    else uv_poll_stop(&s->upoll);
  }
  s->cmask = c;
  s->umask = u;
}

static void on_closed(uv_handle_t *h) {
  session *s = h->data;
  if (++s->closed_handles < 2) return;
  close(s->cfd);
  close(s->ufd);
  SSL_free(s->ssl);
  napi_env env = s->env;
  if (s->cb) napi_delete_reference(env, s->cb);
  if (s->cbuf) napi_delete_reference(env, s->cbuf);
  if (s->ubuf) napi_delete_reference(env, s->ubuf);
  napi_delete_reference(env, s->resource);
  napi_async_destroy(env, s->actx);
  if (!s->cbuf) free(s->c2u);
  if (!s->ubuf) free(s->u2c);
  free(s);
}

static void close_session(session *s) {
  if (s->closing) return;
  s->closing = 1;
  s->state = CLOSING;
  uv_close((uv_handle_t *)&s->cpoll, on_closed);
  uv_close((uv_handle_t *)&s->upoll, on_closed);
}

static void free_ctx(napi_env env, void *data, void *hint) { SSL_CTX_free(data); }

#define CHECK(call)                                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error(env, NULL, "native relay: " #call " failed"); \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static napi_value throw(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* createContext(certPem: string, keyPem: string) -> external SSL_CTX */
static napi_value create_context(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  for (int i = 0; i < 2; i++) {
    napi_valuetype t;
    CHECK(napi_typeof(env, argv[i], &t));
    if (t != napi_string) return throw(env, "native relay: createContext(certPem, keyPem) takes two strings");
  }
  char *pem[2];
  for (int i = 0; i < 2; i++) {
    size_t len;
    CHECK(napi_get_value_string_utf8(env, argv[i], NULL, 0, &len));
    pem[i] = malloc(len + 1);
    CHECK(napi_get_value_string_utf8(env, argv[i], pem[i], len + 1, &len));
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_read_ahead(ctx, 1); /* one read() per record, not header then body */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  BIO *cb = BIO_new_mem_buf(pem[0], -1), *kb = BIO_new_mem_buf(pem[1], -1);
  X509 *cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
  EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
  int ok = cert && key && SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
  X509_free(cert);
  EVP_PKEY_free(key);
  BIO_free(cb);
  BIO_free(kb);
  free(pem[0]);
  free(pem[1]);
  if (!ok) {
    SSL_CTX_free(ctx);
    return throw(env, "native relay: certificate or key not usable");
  }
  napi_value out;
  CHECK(napi_create_external(env, ctx, free_ctx, NULL, &out));
  return out;
}

/*
 * adopt(ctx, clientFd, upstreamFd, onChunk?, clientBuf?, upstreamBuf?): takes over duplicates of
 * both descriptors (the caller closes its own). With onChunk, each read lands in clientBuf (from the
 * client) or upstreamBuf (from the target), ArrayBuffers of at least 32 KiB, and onChunk(direction,
 * length) runs before the bytes are forwarded.
 */
static napi_value adopt(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return throw(env, "native relay: adopt(ctx, clientFd, upstreamFd[, onChunk, clientBuf, upstreamBuf])");
  SSL_CTX *ctx;
  int32_t cfd, ufd;
  CHECK(napi_get_value_external(env, argv[0], (void **)&ctx));
  CHECK(napi_get_value_int32(env, argv[1], &cfd));
  CHECK(napi_get_value_int32(env, argv[2], &ufd));
  /* Every argument is checked before anything is allocated, so a bad call leaks nothing. */
  napi_valuetype t = napi_undefined;
  if (argc >= 6) napi_typeof(env, argv[3], &t);
  unsigned char *cbuf = NULL, *ubuf = NULL;
  if (t == napi_function) {
    size_t n1, n2;
    CHECK(napi_get_arraybuffer_info(env, argv[4], (void **)&cbuf, &n1));
    CHECK(napi_get_arraybuffer_info(env, argv[5], (void **)&ubuf, &n2));
    if (n1 < BUF || n2 < BUF) return throw(env, "native relay: buffers must hold 32 KiB");
  }
  session *s = calloc(1, sizeof *s);
  s->env = env;
  s->cfd = dup(cfd);
  s->ufd = dup(ufd);
  s->ssl = SSL_new(ctx);
  SSL_set_fd(s->ssl, s->cfd);
  if (t == napi_function) {
    s->c2u = cbuf;
    s->u2c = ubuf;
    CHECK(napi_create_reference(env, argv[3], 1, &s->cb));
    CHECK(napi_create_reference(env, argv[4], 1, &s->cbuf));
    CHECK(napi_create_reference(env, argv[5], 1, &s->ubuf));
  } else {
    s->c2u = malloc(BUF);
    s->u2c = malloc(BUF);
  }
  napi_value resource, name;
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_reference(env, resource, 1, &s->resource));
  CHECK(napi_create_string_utf8(env, "NativeRelay", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, resource, name, &s->actx));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, (struct uv_loop_s **)&loop));
  uv_poll_init(loop, &s->cpoll, s->cfd);
  uv_poll_init(loop, &s->upoll, s->ufd);
  s->cpoll.data = s->upoll.data = s;
  s->state = PRE;
  s->cmask = s->umask = -1;
  pump(s, NULL, 0);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "createContext", NAPI_AUTO_LENGTH, create_context, NULL, &f);
  napi_set_named_property(env, exports, "createContext", f);
  napi_create_function(env, "adopt", NAPI_AUTO_LENGTH, adopt, NULL, &f);
  napi_set_named_property(env, exports, "adopt", f);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

#!/usr/bin/env python3
"""Origin HTTP/1.1 server for Portico's end-to-end tests.

Written by hand on top of socket + threads (not http.server) so that every byte on the wire is under the
test's control: framing, keep-alive, interim responses and deliberately broken responses.

Usage:
    origin.py --id ID --port PORT [--ready-file PATH] [--seen-log PATH] [--fail-status CODE] [--idle-timeout SEC]
    origin.py --listen ID=PORT --listen ID2=PORT2 ... [--ready-file PATH]

PORT may be 0: the kernel picks a free port and the ready file / ready line tells which. Each listener has its
own id and its own state (request log, health flag, forced failure status), so one process can stand in for
many origins.

Readiness: once every listener is bound and listening, the process writes PATH (atomically: temp + rename)
with JSON {"pid": N, "listeners": {"ID": PORT, ...}} and prints "READY <same json>" on stdout.

Endpoints (on every listener; every response carries "X-Origin-Id: ID"):
  /echo                 200, JSON: id, method, target, version, headers (list of [name, value]), body_length,
                        body_sha256, chunked (request body was chunked), trailers, expect_continue_sent,
                        conn_requests. Query "rh=Name:value" (repeatable) adds response headers.
  /bytes/N              N bytes of the deterministic pattern, Content-Length, streamed in 64 KiB writes
  /chunked/N            same bytes, Transfer-Encoding: chunked (64 KiB chunks)
  /close/N              same bytes, no length, Connection: close, ends by closing
  /status/CODE          that status; 1xx/204/304 have no body (?cl=N adds a Content-Length: N header anyway)
  /delay/MS             waits MS milliseconds, then 200
  /die-mid-stream       Content-Length: 1000000, sends 1000 bytes then closes (?rst=1: abortive close)
  /bad-framing          ?kind=clte (default: CL and TE) | dupcl (two differing CL) | badcl | badchunk |
                        extra (more bytes than Content-Length says)
  /slow-headers         sends the status line, waits ?ms= (default 2000), then the rest of the head and body
  /id                   body "ID\n"
  /health               200, or 500 while switched unhealthy
  /keepalive-count      how many requests have arrived on this TCP connection (this one included)
  /admin/unhealthy      /health answers 500 from now on
  /admin/healthy        /health answers 200 from now on
  /admin/fail?status=C  every non-admin, non-health request is answered with status C (0 = back to normal;
                        -1 = read the request, then close the connection without answering)
  /admin/idle?ms=N      close keep-alive connections that stay idle N ms between requests (0 = never)
  /ws                   with "Upgrade: websocket": 101 Switching Protocols, then every byte received is sent
                        back (a raw echo tunnel) until the client closes
  /admin/seen           JSON list of the non-admin requests seen: {method, target, headers (list of [name,
                        value] as received), conn, seq, complete}
                        (?contains=S keeps only targets containing S). A request is recorded as soon as its
                        head is parsed; "complete" turns true once its whole body has been read.
  /admin/reset          clears the request log and counters
  /admin/stats          JSON {requests, health_probes, connections_total, connections_open, open_ids}
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

CHUNK = 64 * 1024
PATTERN_PERIOD = 251  # prime, so 64 KiB writes never line up with the period
_PATTERN_BUF = bytes(i % PATTERN_PERIOD for i in range(CHUNK + PATTERN_PERIOD))
MAX_HEAD = 1 << 20
RECV_SIZE = 256 * 1024

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
    429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


def pattern_chunk(offset, n):
    """n (<= 64 KiB) bytes of the pattern starting at absolute offset `offset`."""
    s = offset % PATTERN_PERIOD
    return _PATTERN_BUF[s:s + n]


def pattern_bytes(n, offset=0):
    out = bytearray()
    while len(out) < n:
        out += pattern_chunk(offset + len(out), min(CHUNK, n - len(out)))
    return bytes(out)


class ClientGone(Exception):
    pass


class BadRequest(Exception):
    pass


class ListenerState:
    def __init__(self, ident, seen_log=None, fail_status=0, idle_timeout=0.0):
        self.id = ident
        self.idle_timeout = idle_timeout
        self.lock = threading.Lock()
        self.healthy = True
        self.fail_status = fail_status
        self.seen = []
        self.requests = 0
        self.health_probes = 0
        self.connections_total = 0
        self.connections_open = 0
        self.next_conn = 0
        self.open_ids = set()
        self.seen_log = seen_log

    def record(self, rec):
        with self.lock:
            self.seen.append(rec)
            self.requests += 1
        if self.seen_log:
            with self.lock, open(self.seen_log, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def reset(self):
        with self.lock:
            self.seen = []
            self.requests = 0
            self.health_probes = 0


class Conn:
    """Buffered reader over one accepted connection."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.requests = 0

    def _fill(self):
        try:
            data = self.sock.recv(RECV_SIZE)
        except (ConnectionError, socket.timeout, OSError):
            raise ClientGone()
        if not data:
            raise ClientGone()
        self.buf += data

    def read_head(self):
        start = 0
        while True:
            i = self.buf.find(b"\r\n\r\n", start)
            j = self.buf.find(b"\n\n", start)
            ends = [(i, 4)] if i >= 0 else []
            if j >= 0:
                ends.append((j, 2))
            if ends:
                pos, ln = min(ends)
                head = bytes(self.buf[:pos])
                del self.buf[:pos + ln]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("head too large")
            start = max(0, len(self.buf) - 3)
            if not self.buf and self.requests > 0:
                pass
            self._fill()

    def readline(self, limit=65536):
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            start = len(self.buf)
            self._fill()

    def read_body_exact(self, n, sink):
        """Feed exactly n body bytes to sink(memoryview) without holding them all."""
        if self.buf:
            take = min(n, len(self.buf))
            sink(memoryview(self.buf)[:take])
            del self.buf[:take]
            n -= take
        if n <= 0:
            return
        scratch = bytearray(RECV_SIZE)
        mv = memoryview(scratch)
        while n > 0:
            try:
                got = self.sock.recv_into(mv, min(n, RECV_SIZE))
            except (ConnectionError, socket.timeout, OSError):
                raise ClientGone()
            if got == 0:
                raise ClientGone()
            sink(mv[:got])
            n -= got

    def read_body_chunked(self, sink):
        trailers = []
        while True:
            line = self.readline()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size %r" % size_text)
            if size < 0:
                raise BadRequest("negative chunk size")
            if size == 0:
                while True:
                    t = self.readline()
                    if not t:
                        return trailers
                    if b":" in t:
                        k, v = t.split(b":", 1)
                        trailers.append([k.decode("latin-1"), v.strip().decode("latin-1")])
            self.read_body_exact(size, sink)
            crlf = self.readline()
            if crlf:
                raise BadRequest("missing CRLF after chunk data")

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (ConnectionError, socket.timeout, OSError):
            raise ClientGone()


class Request:
    pass


def parse_head(head):
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest("bad request line %r" % lines[0])
    req = Request()
    req.method = parts[0].decode("latin-1")
    req.target = parts[1].decode("latin-1")
    req.version = parts[2].decode("latin-1")
    req.headers = []
    for line in lines[1:]:
        if not line:
            continue
        if b":" not in line:
            raise BadRequest("bad header line %r" % line)
        k, v = line.split(b":", 1)
        req.headers.append([k.decode("latin-1"), v.strip(b" \t").decode("latin-1")])
    u = urllib.parse.urlsplit(req.target)
    req.path = u.path
    req.query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    return req


def header_values(req, name):
    name = name.lower()
    return [v for k, v in req.headers if k.lower() == name]


def tokens(values):
    out = []
    for v in values:
        out += [t.strip().lower() for t in v.split(",") if t.strip()]
    return out


def qint(req, name, default):
    try:
        return int(req.query.get(name, [default])[0])
    except (TypeError, ValueError):
        return default


class Handler:
    def __init__(self, state, sock, conn_id):
        self.state = state
        self.conn = Conn(sock)
        self.conn_id = conn_id

    # -- response helpers -------------------------------------------------------------------------------------
    def head_bytes(self, status, headers, close):
        out = ["HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status"))]
        out.append("X-Origin-Id: %s\r\n" % self.state.id)
        for k, v in headers:
            out.append("%s: %s\r\n" % (k, v))
        if close:
            out.append("Connection: close\r\n")
        out.append("\r\n")
        return "".join(out).encode("latin-1")

    def respond(self, req, status, body=b"", headers=(), close=False, content_type="text/plain"):
        hdrs = list(headers)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            hdrs = [("Content-Type", content_type), ("Content-Length", str(len(body)))] + hdrs
        data = self.head_bytes(status, hdrs, close)
        if not no_body and req.method != "HEAD":
            data += body
        self.conn.send(data)
        return close

    def stream_pattern(self, req, n, mode, close):
        if mode == "length":
            self.conn.send(self.head_bytes(200, [("Content-Type", "application/octet-stream"),
                                                 ("Content-Length", str(n))], close))
        elif mode == "chunked":
            self.conn.send(self.head_bytes(200, [("Content-Type", "application/octet-stream"),
                                                 ("Transfer-Encoding", "chunked")], close))
        else:  # close-delimited
            self.conn.send(self.head_bytes(200, [("Content-Type", "application/octet-stream")], True))
        if req.method == "HEAD":
            return close or mode == "close"
        off = 0
        while off < n:
            k = min(CHUNK, n - off)
            piece = pattern_chunk(off, k)
            if mode == "chunked":
                self.conn.send(b"%x\r\n" % k + piece + b"\r\n")
            else:
                self.conn.send(piece)
            off += k
        if mode == "chunked":
            self.conn.send(b"0\r\n\r\n")
        return close or mode == "close"

    # -- main loop --------------------------------------------------------------------------------------------
    def run(self):
        try:
            while True:
                if self.serve_one():
                    break
        except ClientGone:
            pass
        except BadRequest as e:
            sys.stdout.write("origin %s conn %d: bad request: %s\n" % (self.state.id, self.conn_id, e))
            sys.stdout.flush()
        finally:
            try:
                self.conn.sock.close()
            except OSError:
                pass

    def serve_one(self):
        idle = self.state.idle_timeout
        if idle and not self.conn.buf:
            self.conn.sock.settimeout(idle)
            try:
                self.conn._fill()
            finally:
                self.conn.sock.settimeout(None)
        head = self.conn.read_head()
        self.conn.requests += 1
        req = parse_head(head)
        conn_tokens = tokens(header_values(req, "connection"))
        if req.version == "HTTP/1.0":
            close = "keep-alive" not in conn_tokens
        else:
            close = "close" in conn_tokens
        is_admin = req.path.startswith("/admin/")
        is_health = req.path == "/health"
        rec = None
        if not is_admin and not is_health:
            rec = {"method": req.method, "target": req.target, "headers": req.headers, "conn": self.conn_id,
                   "seq": self.conn.requests, "complete": False, "time": time.time()}
            self.state.record(rec)

        # Request body: framing as a lenient but correct server would read it.
        te = tokens(header_values(req, "transfer-encoding"))
        cls = header_values(req, "content-length")
        body_len = 0
        digest = hashlib.sha256()
        req.chunked = False
        req.trailers = []
        req.expect_continue_sent = False

        def sink(mv):
            nonlocal body_len
            body_len += len(mv)
            digest.update(mv)

        has_body = bool(te) or (cls and cls[0].strip() not in ("", "0"))
        if has_body and "100-continue" in tokens(header_values(req, "expect")):
            self.conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            req.expect_continue_sent = True
        if te:
            if te[-1] == "chunked":
                req.chunked = True
                req.trailers = self.conn.read_body_chunked(sink)
            else:
                raise BadRequest("unsupported transfer-encoding")
        elif cls:
            try:
                n = int(cls[0].strip())
            except ValueError:
                raise BadRequest("bad content-length")
            self.conn.read_body_exact(n, sink)
        req.body_length = body_len
        req.body_sha256 = digest.hexdigest()
        if rec is not None:
            rec["complete"] = True
            rec["body_length"] = body_len
        return self.dispatch(req, close)

    def dispatch(self, req, close):
        st = self.state
        path = req.path
        parts = path.split("/")

        if path.startswith("/admin/"):
            return self.admin(req, close)
        if path == "/health":
            with st.lock:
                st.health_probes += 1
                healthy = st.healthy
            return self.respond(req, 200 if healthy else 500, b"ok\n" if healthy else b"unhealthy\n", close=close)
        if st.fail_status == -1:
            return True  # drop: close without an answer
        if st.fail_status:
            return self.respond(req, st.fail_status, b"forced failure\n", close=close)
        if path == "/ws":
            return self.websocket(req)

        if path == "/echo":
            extra = []
            for h in req.query.get("rh", []):
                if ":" in h:
                    k, v = h.split(":", 1)
                    extra.append((k.strip(), v.strip()))
            body = json.dumps({
                "id": st.id, "method": req.method, "target": req.target, "path": req.target,
                "version": req.version, "headers": req.headers, "body_length": req.body_length,
                "body_sha256": req.body_sha256, "chunked": req.chunked, "trailers": req.trailers,
                "expect_continue_sent": req.expect_continue_sent, "conn_requests": self.conn.requests,
                "conn": self.conn_id,
            }).encode()
            return self.respond(req, 200, body, headers=extra, close=close, content_type="application/json")
        if len(parts) == 3 and parts[1] in ("bytes", "chunked", "close") and parts[2].isdigit():
            n = int(parts[2])
            mode = {"bytes": "length", "chunked": "chunked", "close": "close"}[parts[1]]
            if mode == "chunked" and req.version == "HTTP/1.0":
                mode = "close"
            return self.stream_pattern(req, n, mode, close)
        if len(parts) == 3 and parts[1] == "bigheaders" and parts[2].isdigit():
            # About N bytes of response header fields (X-Fill-i, 1000 bytes each), then a small body.
            n = int(parts[2])
            extra = [("X-Fill-%d" % i, "f" * 990) for i in range(max(1, n // 1000))]
            return self.respond(req, 200, b"big headers\n", headers=extra, close=close)
        if len(parts) == 3 and parts[1] == "status" and parts[2].isdigit():
            code = int(parts[2])
            extra = []
            if "cl" in req.query and code in (204, 304):
                extra.append(("Content-Length", req.query["cl"][0]))
            return self.respond(req, code, b"status %d\n" % code, headers=extra, close=close)
        if len(parts) == 3 and parts[1] == "delay" and parts[2].isdigit():
            time.sleep(int(parts[2]) / 1000.0)
            return self.respond(req, 200, b"delayed %s\n" % parts[2].encode(), close=close)
        if path == "/die-mid-stream":
            self.conn.send(self.head_bytes(200, [("Content-Type", "application/octet-stream"),
                                                 ("Content-Length", "1000000")], False))
            self.conn.send(pattern_chunk(0, 1000))
            if qint(req, "rst", 0):
                self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return True
        if path == "/bad-framing":
            kind = req.query.get("kind", ["clte"])[0]
            oid = st.id.encode()
            if kind == "dupcl":
                raw = (b"HTTP/1.1 200 OK\r\nX-Origin-Id: " + oid + b"\r\nContent-Length: 5\r\n"
                       b"Content-Length: 7\r\n\r\nhello..")
            elif kind == "badcl":
                raw = b"HTTP/1.1 200 OK\r\nX-Origin-Id: " + oid + b"\r\nContent-Length: 5x\r\n\r\nhello"
            elif kind == "extra":
                raw = (b"HTTP/1.1 200 OK\r\nX-Origin-Id: " + oid + b"\r\nContent-Length: 5\r\n\r\nhello"
                       b"EXTRA-BYTES-AFTER-THE-BODY")
            elif kind == "badchunk":
                raw = (b"HTTP/1.1 200 OK\r\nX-Origin-Id: " + oid + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n")
            else:
                raw = (b"HTTP/1.1 200 OK\r\nX-Origin-Id: " + oid + b"\r\nContent-Length: 5\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            self.conn.send(raw)
            return close  # keep the connection open: a correct proxy must not reuse it
        if path == "/slow-headers":
            ms = qint(req, "ms", 2000)
            self.conn.send(b"HTTP/1.1 200 OK\r\n")
            time.sleep(ms / 1000.0)
            self.conn.send(b"X-Origin-Id: " + st.id.encode() + b"\r\nContent-Length: 5\r\n\r\nslow\n")
            return close
        if path == "/id":
            return self.respond(req, 200, st.id.encode() + b"\n", close=close)
        if path == "/keepalive-count":
            return self.respond(req, 200, b"%d" % self.conn.requests,
                                headers=[("X-Conn-Id", str(self.conn_id))], close=close)
        return self.respond(req, 404, b"origin: no such endpoint\n", close=close)

    def websocket(self, req):
        if "websocket" not in tokens(header_values(req, "upgrade")):
            return self.respond(req, 426, b"upgrade required\n", headers=[("Upgrade", "websocket")], close=True)
        self.conn.send(self.head_bytes(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")], False))
        if self.conn.buf:
            self.conn.send(bytes(self.conn.buf))
            self.conn.buf.clear()
        while True:
            try:
                data = self.conn.sock.recv(65536)
            except OSError:
                return True
            if not data:
                return True
            self.conn.send(data)

    def admin(self, req, close):
        st = self.state
        path = req.path
        if path == "/admin/unhealthy":
            with st.lock:
                st.healthy = False
            return self.respond(req, 200, b"unhealthy\n", close=close)
        if path == "/admin/healthy":
            with st.lock:
                st.healthy = True
            return self.respond(req, 200, b"healthy\n", close=close)
        if path == "/admin/fail":
            with st.lock:
                st.fail_status = qint(req, "status", 0)
            return self.respond(req, 200, b"ok\n", close=close)
        if path == "/admin/idle":
            with st.lock:
                st.idle_timeout = qint(req, "ms", 0) / 1000.0
            return self.respond(req, 200, b"ok\n", close=close)
        if path == "/admin/seen":
            needle = req.query.get("contains", [None])[0]
            with st.lock:
                recs = [dict(r) for r in st.seen if needle is None or needle in r["target"]]
            return self.respond(req, 200, json.dumps(recs).encode(), close=close, content_type="application/json")
        if path == "/admin/reset":
            st.reset()
            return self.respond(req, 200, b"ok\n", close=close)
        if path == "/admin/stats":
            with st.lock:
                d = {"requests": st.requests, "health_probes": st.health_probes,
                     "connections_total": st.connections_total, "connections_open": st.connections_open,
                     "healthy": st.healthy, "fail_status": st.fail_status, "open_ids": sorted(st.open_ids)}
            return self.respond(req, 200, json.dumps(d).encode(), close=close, content_type="application/json")
        return self.respond(req, 404, b"no such admin endpoint\n", close=close)


def serve_connection(state, sock):
    with state.lock:
        state.connections_total += 1
        state.connections_open += 1
        state.next_conn += 1
        conn_id = state.next_conn
        state.open_ids.add(conn_id)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Handler(state, sock, conn_id).run()
    finally:
        with state.lock:
            state.connections_open -= 1
            state.open_ids.discard(conn_id)


def accept_loop(lsock, state):
    while True:
        try:
            sock, _ = lsock.accept()
        except OSError:
            return
        t = threading.Thread(target=serve_connection, args=(state, sock), daemon=True)
        t.start()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", default=None)
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--listen", action="append", default=[], help="ID=PORT (repeatable)")
    ap.add_argument("--ready-file")
    ap.add_argument("--seen-log")
    ap.add_argument("--fail-status", type=int, default=0)
    ap.add_argument("--idle-timeout", type=float, default=0.0)
    args = ap.parse_args(argv)

    specs = []
    for item in args.listen:
        ident, _, port = item.partition("=")
        specs.append((ident, int(port or 0)))
    if args.id is not None or args.port is not None or not specs:
        specs.insert(0, (args.id or "origin", args.port or 0))

    listeners = {}
    threads = []
    for ident, port in specs:
        if ident in listeners:
            ap.error("duplicate listener id %s" % ident)
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((args.host, port))
        lsock.listen(1024)
        state = ListenerState(ident, seen_log=args.seen_log, fail_status=args.fail_status,
                              idle_timeout=args.idle_timeout)
        listeners[ident] = lsock.getsockname()[1]
        threads.append(threading.Thread(target=accept_loop, args=(lsock, state), daemon=True))
    for t in threads:
        t.start()

    info = json.dumps({"pid": os.getpid(), "listeners": listeners})
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(info)
        os.rename(tmp, args.ready_file)
    sys.stdout.write("READY %s\n" % info)
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

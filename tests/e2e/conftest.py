"""Fixtures and helpers for Portico's end-to-end suite.

Everything here talks to real processes over loopback: the portico binary (build/portico, or $PORTICO_BIN) and
origin servers (origin.py, run as subprocesses). Synchronisation is always by polling something observable
(readiness endpoints, ready files, logs, metrics) with a bounded deadline, never by bare sleeps.

A missing binary makes the tests that need it fail (not skip).

Helpers meant for the test modules (import them with `from conftest import ...`):
  free_port, reserve_dead_port, wait_for, RawConn, Response, raw_exchange, http_request, parse_metrics,
  Metrics, dump_yaml, make_config, route, upstream, nodes_of, run_wrk, start_wrk, RssSampler, pattern_bytes,
  PatternChecker.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PORTICO_BIN = Path(os.environ.get("PORTICO_BIN", str(ROOT / "build" / "portico")))
ORIGIN_PY = HERE / "origin.py"
PYTHON = sys.executable or "/usr/bin/python3"
LOOPBACK = "127.0.0.1"

sys.path.insert(0, str(HERE))
from origin import CHUNK, pattern_bytes, pattern_chunk  # noqa: E402

__all__ = [
    "free_port", "reserve_dead_port", "wait_for", "RawConn", "Response", "raw_exchange", "http_request",
    "parse_metrics", "Metrics", "dump_yaml", "make_config", "route", "upstream", "nodes_of", "run_wrk",
    "start_wrk", "RssSampler", "pattern_bytes", "pattern_chunk", "PatternChecker", "Portico", "Origin",
]


# ----------------------------------------------------------------------------------------------------------------
# Generic helpers
# ----------------------------------------------------------------------------------------------------------------

_used_ports = set()
_port_lock = threading.Lock()


def free_port(host=LOOPBACK):
    """A free TCP port below the kernel's ephemeral range (so outgoing connections never collide with it)."""
    with _port_lock:
        for _ in range(500):
            p = random.randint(20000, 32000)
            if p in _used_ports:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, p))
            except OSError:
                continue
            finally:
                s.close()
            _used_ports.add(p)
            return p
    raise RuntimeError("no free port found")


def reserve_dead_port(host=LOOPBACK):
    """(port, sock): a port that is bound but not listening, so connecting to it is refused, and nothing else can
    take it while `sock` stays open. Close `sock` when done."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s.getsockname()[1], s


def stop_process(proc, grace=5.0):
    """SIGTERM `proc`, give it `grace` seconds, then SIGKILL. No-op if it already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_for(predicate, timeout=5.0, interval=0.02, message=None):
    """Polls predicate() until it returns something truthy (returned) or `timeout` seconds pass (AssertionError).
    Exceptions raised by the predicate count as "not yet" and the last one is reported."""
    deadline = time.monotonic() + timeout
    last_exc = None
    last_val = None
    while True:
        try:
            last_val = predicate()
            if last_val:
                return last_val
        except Exception as e:  # noqa: BLE001 - polling: anything counts as "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else (message or getattr(predicate, "__name__", "condition"))
            raise AssertionError("timed out after %.1fs waiting for %s (last value %r, last error %r)"
                                 % (timeout, detail, last_val, last_exc))
        time.sleep(interval)


def blast(port, path, threads=4, seconds=2.0, stop=None):
    """As many keep-alive GETs of `path` on `port` as `threads` clients make in `seconds` (or until `stop`, an
    Event, is set): {status: count}, 0 counting transport errors. For load far above a limit (rate-limit
    tests): every answer is read, a "Connection: close" one opens a new connection."""
    counts = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        local = {}
        conn = None
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                local[resp.status] = local.get(resp.status, 0) + 1
                if (resp.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except OSError:
                local[0] = local.get(0, 0) + 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(client) for _ in range(threads)]:
            f.result()
    return counts


# ----------------------------------------------------------------------------------------------------------------
# Raw HTTP over sockets (exact bytes in, parsed responses out)
# ----------------------------------------------------------------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head, interim=()):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.raw_head = raw_head
        self.interim = list(interim)  # 1xx responses received before this one
        self.body_length = len(body) if body is not None else 0
        self.body_sha256 = None
        self.complete = True  # False when the connection closed before the framing said the body was done

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def connection_tokens(self):
        out = []
        for v in self.header_all("connection"):
            out += [t.strip().lower() for t in v.split(",") if t.strip()]
        return out

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                         (self.body or b"")[:200])


class ConnectionClosed(Exception):
    pass


class RawConn:
    """One client TCP connection to a server, with exact control over the bytes sent."""

    def __init__(self, port, host=LOOPBACK, source=None, timeout=10.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, size=262144):
        if self.eof:
            raise ConnectionClosed("connection closed by peer")
        try:
            data = self.sock.recv(size)
        except ConnectionResetError:
            self.eof = True
            raise ConnectionClosed("connection reset by peer")
        if not data:
            self.eof = True
            raise ConnectionClosed("connection closed by peer")
        self.buf += data

    def _read_head(self, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(b"\r\n\r\n", start)
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > limit:
                raise AssertionError("response head larger than %d bytes" % limit)
            start = max(0, len(self.buf) - 3)
            self._fill()

    def _readline(self):
        start = 0
        while True:
            i = self.buf.find(b"\r\n", start)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            start = max(0, len(self.buf) - 1)
            self._fill()

    def _read_exact(self, n, sink):
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            sink(memoryview(self.buf)[:take])
            del self.buf[:take]
            n -= take

    def read_response(self, method="GET", keep_body=True, sink=None, on_head=None):
        """Reads one final response (1xx interim responses are collected into .interim). The body is kept unless
        keep_body=False (then only its length and sha256 are computed); `sink(memoryview)` sees every body byte.
        A body cut short by the peer closing gives a Response with complete=False."""
        interim = []
        while True:
            head = self._read_head()
            lines = head.split(b"\r\n")
            m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
            if not m:
                raise AssertionError("bad status line %r (head %r)" % (lines[0], head[:300]))
            headers = []
            for line in lines[1:]:
                k, sep, v = line.partition(b":")
                if not sep:
                    raise AssertionError("bad response header line %r" % line)
                headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
            resp = Response(m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"), headers,
                            b"", head)
            if 100 <= resp.status < 200 and resp.status != 101:
                interim.append(resp)
                continue
            break
        resp.interim = interim
        if on_head:
            on_head(resp)
        body = bytearray()
        digest = hashlib.sha256()
        count = [0]

        def feed(mv):
            count[0] += len(mv)
            digest.update(mv)
            if keep_body:
                body.extend(mv)
            if sink:
                sink(mv)

        te = [t.strip().lower() for v in resp.header_all("transfer-encoding") for t in v.split(",") if t.strip()]
        cl = resp.header_all("content-length")
        try:
            if method == "HEAD" or resp.status in (204, 304) or resp.status == 101:
                pass
            elif te and te[-1] == "chunked":
                while True:
                    line = self._readline()
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self._readline():
                            pass
                        break
                    self._read_exact(size, feed)
                    if self._readline() != b"":
                        raise AssertionError("missing CRLF after chunk")
            elif cl:
                self._read_exact(int(cl[0]), feed)
            else:
                while True:
                    if self.buf:
                        feed(memoryview(bytes(self.buf)))
                        self.buf.clear()
                    self._fill()
        except ConnectionClosed:
            close_delimited = not te and not cl
            if not close_delimited:
                resp.complete = False
        resp.body = bytes(body) if keep_body else None
        resp.body_length = count[0]
        resp.body_sha256 = digest.hexdigest()
        return resp

    def request(self, method, target, host="test.local", headers=(), body=None, version="HTTP/1.1", **kw):
        self.send(build_request(method, target, host=host, headers=headers, body=body, version=version))
        return self.read_response(method=method, **kw)

    def read_available(self, timeout=0.5):
        """Whatever arrives within `timeout` (b"" if nothing); sets .eof when the peer closed."""
        self.sock.settimeout(timeout)
        out = bytes(self.buf)
        self.buf.clear()
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.eof = True
                    break
                out += data
        except socket.timeout:
            pass
        except ConnectionResetError:
            self.eof = True
        return out

    def wait_closed(self, timeout=5.0):
        """True once the peer has closed the connection (EOF or RST) within `timeout`; data that arrives meanwhile
        is appended to .buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.buf += data
        return True


def build_request(method, target, host="test.local", headers=(), body=None, version="HTTP/1.1"):
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    names = set()
    for k, v in (headers.items() if isinstance(headers, dict) else headers):
        lines.append("%s: %s" % (k, v))
        names.add(k.lower())
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def raw_exchange(port, data, timeout=5.0, source=None):
    """Sends `data` on a new connection and returns everything received until the peer closes or `timeout`."""
    with RawConn(port, source=source, timeout=timeout) as c:
        c.send(data)
        c.wait_closed(timeout)
        return bytes(c.buf), c.eof


def http_request(port, method="GET", path="/", headers=None, body=None, host=None, timeout=10.0):
    """Plain request through http.client on a fresh connection: (status, headers dict lower-cased, body)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if host is not None:
            hdrs["Host"] = host
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------------------------
# Body pattern checking
# ----------------------------------------------------------------------------------------------------------------

class PatternChecker:
    """Streaming check that bytes equal origin.py's deterministic pattern (without holding them)."""

    def __init__(self):
        self.offset = 0
        self.mismatch_at = None

    def __call__(self, mv):
        if self.mismatch_at is not None:
            self.offset += len(mv)
            return
        pos = 0
        n = len(mv)
        while pos < n:
            k = min(CHUNK, n - pos)
            if mv[pos:pos + k] != pattern_chunk(self.offset + pos, k):
                self.mismatch_at = self.offset + pos
                break
            pos += k
        self.offset += n

    @property
    def ok(self):
        return self.mismatch_at is None


def pattern_sha256(n):
    h = hashlib.sha256()
    off = 0
    while off < n:
        k = min(CHUNK, n - off)
        h.update(pattern_chunk(off, k))
        off += k
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# Prometheus text parsing
# ----------------------------------------------------------------------------------------------------------------

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """[(name, {labels}, float)] from Prometheus text exposition; raises on malformed sample lines."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("malformed metrics line: %r" % line)
        labels = {}
        if m.group(3):
            rest = m.group(3)
            pos = 0
            while pos < len(rest):
                lm = _LABEL_RE.match(rest, pos)
                if not lm:
                    raise AssertionError("malformed labels in metrics line: %r" % line)
                labels[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                pos = lm.end()
        v = m.group(4)
        value = float("inf") if v == "+Inf" else float("-inf") if v == "-Inf" else float(v)
        samples.append((m.group(1), labels, value))
    return samples


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples = parse_metrics(text)

    def find(self, name, **labels):
        return [(n, l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(val) for k, val in labels.items())]

    def has(self, name, **labels):
        return bool(self.find(name, **labels))

    def value(self, name, default=0.0, **labels):
        """Sum of the samples of `name` whose labels include `labels` (default when there is none)."""
        found = self.find(name, **labels)
        if not found:
            return default
        return sum(v for _, _, v in found)

    def names(self):
        return {n for n, _, _ in self.samples}


# ----------------------------------------------------------------------------------------------------------------
# Config building and YAML emission (no PyYAML dependency)
# ----------------------------------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _flowable(v):
    if isinstance(v, dict):
        return not v
    if isinstance(v, (list, tuple)):
        return all(_flowable(x) or (isinstance(x, (list, tuple))) and all(not isinstance(y, dict) for y in x)
                   for x in v)
    return True


def _flow(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    return json.dumps(v)


def dump_yaml(obj):
    """Block-style YAML for dicts, flow style (JSON) for scalars and lists of scalars/lists."""
    lines = []

    def key_text(k):
        k = str(k)
        return k if _PLAIN_KEY.match(k) and k not in ("true", "false", "null", "yes", "no", "on", "off") \
            else json.dumps(k)

    def emit(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            for k, v in o.items():
                if _flowable(v):
                    lines.append("%s%s: %s" % (pad, key_text(k), _flow(v)))
                else:
                    lines.append("%s%s:" % (pad, key_text(k)))
                    emit(v, ind + 2)
        elif isinstance(o, (list, tuple)):
            for item in o:
                if isinstance(item, dict) and item:
                    start = len(lines)
                    emit(item, ind + 2)
                    lines[start] = pad + "- " + lines[start][ind + 2:]
                elif _flowable(item):
                    lines.append("%s- %s" % (pad, _flow(item)))
                else:
                    lines.append("%s-" % pad)
                    emit(item, ind + 2)
        else:
            lines.append(pad + _flow(o))

    emit(obj, 0)
    return "\n".join(lines) + "\n"


def nodes_of(*origins, weights=None):
    """{"127.0.0.1:PORT": weight} for Origin objects, ports or "host:port" strings."""
    out = {}
    for i, o in enumerate(origins):
        node = o.node if hasattr(o, "node") else ("%s:%d" % (LOOPBACK, o) if isinstance(o, int) else str(o))
        out[node] = (weights[i] if weights else 1)
    return out


def upstream(*origins, weights=None, **kw):
    u = {"type": "roundrobin", "nodes": nodes_of(*origins, weights=weights)}
    u.update(kw)
    return u


def route(rid, uri, *origins, **kw):
    """A route dict. `uri` may be a list (-> uris). Origins give an inline roundrobin upstream unless
    upstream/upstream_id/service_id is passed."""
    r = {"id": rid}
    if isinstance(uri, (list, tuple)):
        r["uris"] = list(uri)
    else:
        r["uri"] = uri
    if origins and not any(k in kw for k in ("upstream", "upstream_id", "service_id")):
        r["upstream"] = upstream(*origins)
    r.update(kw)
    return r


def make_config(routes, upstreams=None, services=None):
    cfg = {"routes": list(routes)}
    if upstreams:
        cfg["upstreams"] = list(upstreams)
    if services:
        cfg["services"] = list(services)
    return cfg


def config_text(config, fmt="yaml", raw=False):
    """File content for a config given as a dict (YAML + "#END", or JSON) or as YAML text ("#END" appended when
    missing, unless raw=True: then the text is written verbatim, e.g. to test a file without the marker)."""
    if isinstance(config, (bytes, str)):
        data = config if isinstance(config, bytes) else config.encode()
        if not raw and fmt == "yaml" and not data.rstrip().endswith(b"#END"):
            data = data.rstrip(b"\n") + b"\n#END\n"
        return data
    if fmt == "json":
        return json.dumps(config, indent=1).encode()
    return (dump_yaml(config) + "#END\n").encode()


# ----------------------------------------------------------------------------------------------------------------
# Process management: origins and portico
# ----------------------------------------------------------------------------------------------------------------

def _proc_tree_rss_kb(pid):
    """VmRSS of pid plus all its descendant processes (threads share the process's RSS)."""
    total = 0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            continue
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


class RssSampler:
    """Samples the RSS (KiB) of a process tree every `interval` seconds in a background thread."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.max_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            kb = _proc_tree_rss_kb(self.pid)
            if kb:
                self.max_kb = max(self.max_kb, kb)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


class Origin:
    """One listener of an origin.py process."""

    def __init__(self, proc, ident, port, group):
        self.proc = proc
        self.id = ident
        self.port = port
        self.group = group
        self.node = "%s:%d" % (LOOPBACK, port)

    def get(self, path, method="GET", headers=None, body=None):
        return http_request(self.port, method, path, headers=headers, body=body)

    def seen(self, contains=None, complete_only=False):
        q = "/admin/seen"
        if contains:
            q += "?contains=" + _quote(contains)
        st, _, body = self.get(q)
        assert st == 200, "origin %s /admin/seen -> %s" % (self.id, st)
        recs = json.loads(body)
        if complete_only:
            recs = [r for r in recs if r.get("complete")]
        return recs

    def hits(self, contains=None):
        return len(self.seen(contains))

    def reset(self):
        assert self.get("/admin/reset")[0] == 200

    def set_healthy(self, healthy):
        assert self.get("/admin/healthy" if healthy else "/admin/unhealthy")[0] == 200

    def fail(self, status):
        assert self.get("/admin/fail?status=%d" % status)[0] == 200

    def set_idle_timeout(self, ms):
        assert self.get("/admin/idle?ms=%d" % ms)[0] == 200

    def stats(self):
        return json.loads(self.get("/admin/stats")[2])

    def conn_open(self, conn_id):
        """Whether the origin's connection `conn_id` (as in seen() records) is still open."""
        return conn_id in self.stats()["open_ids"]

    def stop(self):
        self.group.stop()

    def alive(self):
        return self.proc.poll() is None


def _quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


class OriginGroup:
    def __init__(self, workdir, ids, extra_args=()):
        self.workdir = Path(workdir)
        self.ids = list(ids)
        self.extra_args = list(extra_args)
        self.proc = None
        self.origins = {}

    def start(self, timeout=10.0):
        tag = "-".join(self.ids)[:40]
        ready = self.workdir / ("origin-%s-%d.ready" % (tag, random.randint(0, 1 << 30)))
        self.log_path = self.workdir / (ready.name + ".log")
        args = [PYTHON, str(ORIGIN_PY), "--ready-file", str(ready)]
        for i in self.ids:
            args += ["--listen", "%s=0" % i]
        args += self.extra_args
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def is_ready():
            if self.proc.poll() is not None:
                raise RuntimeError("origin exited with %s: %s" % (self.proc.returncode, self.log_path.read_text()))
            return ready.exists()

        deadline = time.monotonic() + timeout
        while not is_ready():
            if time.monotonic() > deadline:
                raise AssertionError("origin %s not ready within %.0fs" % (self.ids, timeout))
            time.sleep(0.01)
        info = json.loads(ready.read_text())
        for i in self.ids:
            self.origins[i] = Origin(self.proc, i, int(info["listeners"][i]), self)
        return self

    def stop(self):
        stop_process(self.proc)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


_LIVE_PORTICOS = []

DEFAULT_FLAGS = {
    "workers": 2,
    "log_level": "info",
    "drain_delay": 0,
    "drain_timeout": 5,
    "watch_interval": 0.2,
}


class PorticoProcess:
    """What every wrapper of a portico process shares (Portico here, ControlPlane in controlplane.py,
    DataPlane in dataplane.py): the process in `self.proc`, its status listener on `self.status_port`, its
    error log and stdout in `self.error_log_path` / `self.stdout_path`, and `describe()` / `log_tail()` for
    failure messages."""

    def error_log(self):
        """The error log and stdout, concatenated (either may not exist yet)."""
        text = ""
        for p in (self.error_log_path, self.stdout_path):
            try:
                text += p.read_text(errors="replace")
            except FileNotFoundError:
                pass
        return text

    def log_tail(self, n=80):
        return "\n".join(self.error_log().splitlines()[-n:])

    def log_size(self):
        """A mark for log_since(): the current length of the error log text."""
        return len(self.error_log())

    def log_since(self, mark):
        return self.error_log()[mark:]

    def describe(self):
        return "portico"

    def wait_diagnostics(self):
        """Extra text for a wait_up failure message."""
        return ""

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def status_get(self, path, timeout=5.0):
        conn = http.client.HTTPConnection(LOOPBACK, self.status_port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def config_status(self):
        st, body = self.status_get("/status/config")
        assert st == 200, "/status/config -> %s %r" % (st, body[:200])
        return json.loads(body)

    def wait_up(self, ready=True, timeout=20.0):
        path = "/readyz" if ready else "/healthz"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise _StartFailed("exited with code %s" % self.proc.returncode)
            try:
                st, _ = self.status_get(path, timeout=1.0)
                if st == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("%s: %s not 200 within %.0fs%s\n--- log tail ---\n%s"
                                     % (self.describe(), path, timeout, self.wait_diagnostics(), self.log_tail()))
            time.sleep(0.02)

    def terminate(self, grace):
        """SIGTERM (after SIGCONT, in case a test stopped it), SIGKILL after `grace` seconds; forgets the
        process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self in _LIVE_PORTICOS:
            _LIVE_PORTICOS.remove(self)


class Portico(PorticoProcess):
    def __init__(self, workdir, config, fmt="yaml", name="portico", **flags):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.fmt = fmt
        self.config_path = self.workdir / ("config.json" if fmt == "json" else "config.yaml")
        self.error_log_path = self.workdir / "error.log"
        self.access_log_path = self.workdir / "access.log"
        self.stdout_path = self.workdir / "stdout.log"
        self.flags = dict(DEFAULT_FLAGS)
        self.flags.update(flags)
        self.proc = None
        self.port = None
        self.status_port = None
        self._write_counter = 0
        self.write_config(config)

    # -- files --------------------------------------------------------------------------------------------------
    def write_config(self, config, raw=False):
        """Atomic replace: write a temp file in the same directory, then rename over the config path."""
        self._write_counter += 1
        data = config_text(config, self.fmt, raw=raw)
        tmp = self.workdir / (".%s.tmp%d" % (self.config_path.name, self._write_counter))
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.config_path)
        self.config_bytes = data
        return data

    def access_log_lines(self):
        try:
            text = self.access_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    # -- process ------------------------------------------------------------------------------------------------
    def argv(self):
        args = [str(PORTICO_BIN), "--config", str(self.config_path),
                "--listen", "%s:%d" % (LOOPBACK, self.port),
                "--status-listen", "%s:%d" % (LOOPBACK, self.status_port)]
        flags = dict(self.flags)
        if "access_log" not in flags:
            flags["access_log"] = str(self.access_log_path)
        if "error_log" not in flags:
            flags["error_log"] = str(self.error_log_path)
        for k, v in flags.items():
            if v is None:
                continue
            args += ["--" + k.replace("_", "-"), str(v)]
        return args

    def start(self, wait_ready=True, timeout=15.0):
        assert PORTICO_BIN.exists(), ("portico binary not found at %s (build it: `make build` or "
                                      "`ninja -C build portico`)" % PORTICO_BIN)
        for attempt in range(3):
            self.port = free_port()
            self.status_port = free_port()
            out = open(self.stdout_path, "ab")
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=str(self.workdir))
            out.close()
            if self not in _LIVE_PORTICOS:
                _LIVE_PORTICOS.append(self)
            try:
                self.wait_up(ready=wait_ready, timeout=timeout)
                return self
            except _StartFailed as e:
                log = self.error_log()
                if attempt < 2 and re.search(r"in use|bind", log, re.I):
                    continue
                raise AssertionError("portico failed to start (%s)\nargv: %s\n--- log tail ---\n%s"
                                     % (e, " ".join(self.argv()), self.log_tail()))
        raise AssertionError("portico failed to start")

    def sighup(self):
        self.signal(signal.SIGHUP)

    def sigterm(self):
        self.signal(signal.SIGTERM)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        self.terminate(float(self.flags.get("drain_timeout") or 5) + 5)

    def rss_kb(self):
        return _proc_tree_rss_kb(self.pid)

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def conn(self, **kw):
        return RawConn(self.port, **kw)

    def request(self, method, target, host="test.local", headers=(), body=None, **kw):
        """One request on a new raw connection; returns a Response."""
        with RawConn(self.port) as c:
            return c.request(method, target, host=host, headers=headers, body=body, **kw)

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    def metrics(self):
        st, body = self.status_get("/metrics")
        assert st == 200, "/metrics -> %s" % st
        return Metrics(body.decode())

    def generation(self):
        return int(self.config_status()["generation"])

    def reload(self, config, timeout=10.0):
        """Atomically rewrites the config file and waits until /status/config's generation advances."""
        before = self.generation()
        self.write_config(config)
        return wait_for(lambda: self.generation() > before and self.generation(), timeout=timeout,
                        message="config generation to advance past %d" % before)


class _StartFailed(Exception):
    pass


# ----------------------------------------------------------------------------------------------------------------
# wrk
# ----------------------------------------------------------------------------------------------------------------

WRK_LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  responses = 0
  bad = ""
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if string.len(bad) < 200 then bad = bad .. tostring(status) .. " " end
  end
end

function done(summary, latency, requests)
  local n, r, b = 0, 0, ""
  for _, t in ipairs(threads) do
    n = n + t:get("non2xx")
    r = r + t:get("responses")
    b = b .. t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'E2E_RESULT {"requests": %d, "responses": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "duration_us": %d, "bad_statuses": "%s"}\n',
    summary.requests, r, n, e.connect, e.read, e.write, e.status, e.timeout, summary.duration, b))
end
"""


class WrkRun:
    def __init__(self, proc, out_path):
        self.proc = proc
        self.out_path = out_path
        self.result = None

    def wait(self, timeout=60.0):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("wrk did not finish within %.0fs" % timeout)
        out = Path(self.out_path).read_text(errors="replace")
        m = re.search(r"^E2E_RESULT (\{.*\})$", out, re.M)
        assert m, "wrk produced no result (rc=%s):\n%s" % (self.proc.returncode, out)
        self.result = json.loads(m.group(1))
        self.result["socket_errors"] = sum(self.result[k] for k in ("connect", "read", "write", "timeout"))
        self.result["output"] = out
        return self.result

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start_wrk(url, connections=20, duration=10, threads=2, timeout=5, headers=(), workdir=None):
    workdir = Path(workdir or tempfile.mkdtemp(prefix="wrk-"))
    script = workdir / "count.lua"
    script.write_text(WRK_LUA)
    out_path = workdir / ("wrk-%d.out" % random.randint(0, 1 << 30))
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ss" % duration, "--timeout", "%ss" % timeout,
            "-s", str(script)]
    for h in headers:
        args += ["-H", h]
    args.append(url)
    out = open(out_path, "wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    return WrkRun(proc, out_path)


def run_wrk(url, duration=5, **kw):
    run = start_wrk(url, duration=duration, **kw)
    return run.wait(timeout=duration + 30)


# ----------------------------------------------------------------------------------------------------------------
# pytest plumbing
# ----------------------------------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for p in list(_LIVE_PORTICOS):
            rep.sections.append(("portico %s log tail (%s)" % (p.name, p.workdir), p.log_tail()))


class _Factory:
    def __init__(self, tmp_factory, kind):
        self.tmp_factory = tmp_factory
        self.kind = kind
        self.items = []

    def cleanup(self):
        for it in reversed(self.items):
            try:
                it.stop()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass


@pytest.fixture(scope="session")
def e2e_tmp(tmp_path_factory):
    return tmp_path_factory


def _origin_factory(tmp_dir_fn):
    groups = []

    def start(*ids, fail_status=0, seen_log=False):
        """start("a") -> Origin; start("a", "b") -> list of Origins (one process, one listener per id)."""
        ids = ids or ("origin",)
        extra = []
        if fail_status:
            extra += ["--fail-status", str(fail_status)]
        d = tmp_dir_fn()
        if seen_log:
            extra += ["--seen-log", str(Path(d) / ("seen-%s.log" % "-".join(ids)))]
        g = OriginGroup(d, ids, extra).start()
        groups.append(g)
        if len(ids) == 1:
            return g.origins[ids[0]]
        return [g.origins[i] for i in ids]

    return start, groups


def _portico_factory(tmp_dir_fn):
    started = []

    def start(config, fmt="yaml", wait_ready=True, name="portico", **flags):
        """Writes `config` (dict -> YAML + #END, or text used verbatim), starts portico, waits for /readyz 200."""
        p = Portico(Path(tmp_dir_fn()) / ("%s-%d" % (name, len(started))), config, fmt=fmt, name=name, **flags)
        started.append(p)
        p.start(wait_ready=wait_ready)
        return p

    return start, started


@pytest.fixture
def origin(tmp_path):
    start, groups = _origin_factory(lambda: tmp_path)
    yield start
    for g in groups:
        g.stop()


@pytest.fixture
def portico(tmp_path, request):
    start, started = _portico_factory(lambda: tmp_path)
    yield start
    for p in started:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed:
            print("\n--- portico %s (%s) log tail ---\n%s" % (p.name, p.workdir, p.log_tail()))
        p.stop()


@pytest.fixture(scope="module")
def origin_module(tmp_path_factory):
    start, groups = _origin_factory(lambda: tmp_path_factory.mktemp("origin"))
    yield start
    for g in groups:
        g.stop()


@pytest.fixture(scope="module")
def portico_module(tmp_path_factory):
    start, started = _portico_factory(lambda: tmp_path_factory.mktemp("portico"))
    yield start
    for p in started:
        p.stop()


@pytest.fixture
def wrk(tmp_path):
    runs = []

    def start(url, **kw):
        r = start_wrk(url, workdir=tmp_path, **kw)
        runs.append(r)
        return r

    yield start
    for r in runs:
        r.kill()


# --- control plane fixtures ---
# etcd clusters (etcd_cluster.py) and Portico in an etcd-backed role (controlplane.py). Factories, so that a test
# module can start what it needs with its own flags; everything started is stopped by the finalizer (and the
# etcd clusters also at interpreter exit).
#
#   def test_x(etcd, controlplane):
#       e = etcd(size=1)                                   # started and healthy
#       cp = controlplane(e.endpoints_arg())               # role control_plane, /readyz 200
#       tr = controlplane(e.endpoints_arg(), role="traditional", etcd_prefix="/t")
#
# etcd_module / controlplane_module are the same with module scope.

def _etcd_factory(tmp_dir_fn):
    from etcd_cluster import EtcdCluster
    clusters = []

    def start(size=1, name="etcd", tls=None):
        c = EtcdCluster(Path(tmp_dir_fn()) / ("%s-%d" % (name, len(clusters))), size=size, name=name, tls=tls)
        clusters.append(c)
        return c.start_all()

    return start, clusters


def _controlplane_factory(tmp_dir_fn):
    from controlplane import ControlPlane
    started = []

    def start(etcd_endpoints, role="control_plane", wait_ready=True, name=None, **flags):
        cp = ControlPlane(Path(tmp_dir_fn()) / ("%s-%d" % (name or role, len(started))), etcd_endpoints,
                          role=role, name=name, **flags)
        started.append(cp)
        return cp.start(wait_ready=wait_ready)

    return start, started


def _stop_all(items, request=None):
    failed = request is not None and getattr(request.node, "rep_call", None) is not None \
        and request.node.rep_call.failed
    for it in reversed(items):
        if failed and hasattr(it, "log_tail"):
            print("\n--- %s (%s) log tail ---\n%s" % (it.name, it.workdir, it.log_tail()))
        try:
            if hasattr(it, "destroy"):
                it.destroy()
            else:
                it.stop()
        except Exception:  # noqa: BLE001 - best effort teardown
            pass


@pytest.fixture
def etcd(tmp_path):
    start, clusters = _etcd_factory(lambda: tmp_path)
    yield start
    _stop_all(clusters)


@pytest.fixture(scope="module")
def etcd_module(tmp_path_factory):
    start, clusters = _etcd_factory(lambda: tmp_path_factory.mktemp("etcd"))
    yield start
    _stop_all(clusters)


@pytest.fixture
def controlplane(tmp_path, request):
    start, started = _controlplane_factory(lambda: tmp_path)
    yield start
    _stop_all(started, request)


@pytest.fixture(scope="module")
def controlplane_module(tmp_path_factory):
    start, started = _controlplane_factory(lambda: tmp_path_factory.mktemp("cp"))
    yield start
    _stop_all(started)


# --- data plane fixtures ---
# Portico in the data_plane role (dataplane.py), for the hybrid-sync tests. Factories like the control plane
# ones above; everything started is stopped by the finalizer.
#
#   def test_x(dataplane):
#       dp = dataplane(["http://127.0.0.1:P3"], cp.state_dir / "signing.pub", token, "dp1")   # /readyz 200
#       dp = dataplane(urls, keys, token, "dp2", wait_ready=False)                            # /healthz 200
#
# dataplane_module is the same with module scope.

def _dataplane_factory(tmp_dir_fn):
    from dataplane import DataPlane
    started = []

    def start(control_planes, trusted_keys, token, node_id, wait_ready=True, name=None, **flags):
        dp = DataPlane(Path(tmp_dir_fn()) / ("%s-%d" % (name or node_id, len(started))), control_planes,
                       trusted_keys, token, node_id, name=name, **flags)
        started.append(dp)
        return dp.start(wait_ready=wait_ready)

    return start, started


@pytest.fixture
def dataplane(tmp_path, request):
    start, started = _dataplane_factory(lambda: tmp_path)
    yield start
    _stop_all(started, request)


@pytest.fixture(scope="module")
def dataplane_module(tmp_path_factory):
    start, started = _dataplane_factory(lambda: tmp_path_factory.mktemp("dp"))
    yield start
    _stop_all(started)
# --- end of data plane fixtures ---


# --- gateway fixtures ---
# One gateway (gateway_modes.py) per way a config arrives: a file ("file"), the Admin API of a traditional
# process ("admin"), the Admin API of a control plane synced to a data plane ("hybrid"). A test that takes
# `gateway` runs once per mode:
#
#   def test_x(gateway):
#       gateway.apply({"routes": [route("r1", "/echo", gateway.origin, host="a.test")]})   # served on return
#       assert gateway.request("GET", "/echo", host="a.test").status == 200
#
# gateway_module is the same with module scope (one gateway per mode for the whole module; each test starts
# with an apply() of the state it needs). The admin and hybrid modes share one etcd member per session
# (gateway_etcd); every gateway has its own --etcd-prefix.

GATEWAY_MODES = ("file", "admin", "hybrid")


@pytest.fixture(scope="session")
def gateway_etcd(tmp_path_factory):
    start, clusters = _etcd_factory(lambda: tmp_path_factory.mktemp("gateway-etcd"))
    yield start(size=1, name="gateway-etcd")
    _stop_all(clusters)


def _start_gateway(request, workdir):
    from gateway_modes import start_gateway
    etcd = None if request.param == "file" else request.getfixturevalue("gateway_etcd")
    return start_gateway(request.param, workdir, etcd=etcd)


@pytest.fixture(params=GATEWAY_MODES)
def gateway(request, tmp_path):
    gw = _start_gateway(request, tmp_path / "gateway")
    yield gw
    gw.stop()


@pytest.fixture(scope="module", params=GATEWAY_MODES)
def gateway_module(request, tmp_path_factory):
    gw = _start_gateway(request, tmp_path_factory.mktemp("gateway-" + request.param))
    yield gw
    gw.stop()
# --- end of gateway fixtures ---


# --- Redis fixtures ---
# Real redis-server processes (redis_servers.py) on loopback, for the rate-limit tests. Factories like the etcd
# ones: everything started is stopped by the finalizer.
#
#   def test_x(redis):
#       r = redis()                    # a standalone server, PING answered
#       r = redis(password="s3cret")   # with requirepass
#   def test_y(redis_cluster):
#       c = redis_cluster()            # 3 masters + 1 replica each, cluster_state:ok
#
# redis_module / redis_cluster_module are the same with module scope.

def _redis_factory(tmp_dir_fn, cluster=False):
    from redis_servers import RedisCluster, RedisServer
    started = []

    def start(**kw):
        workdir = Path(tmp_dir_fn()) / ("redis-%s%d" % ("cluster-" if cluster else "", len(started)))
        s = RedisCluster(workdir, **kw) if cluster else RedisServer(workdir, **kw)
        started.append(s)
        return s.start()

    return start, started


@pytest.fixture
def redis(tmp_path, request):
    start, started = _redis_factory(lambda: tmp_path)
    yield start
    _stop_all(started, request)


@pytest.fixture(scope="module")
def redis_module(tmp_path_factory):
    start, started = _redis_factory(lambda: tmp_path_factory.mktemp("redis"))
    yield start
    _stop_all(started)


@pytest.fixture
def redis_cluster(tmp_path, request):
    start, started = _redis_factory(lambda: tmp_path, cluster=True)
    yield start
    _stop_all(started, request)


@pytest.fixture(scope="module")
def redis_cluster_module(tmp_path_factory):
    start, started = _redis_factory(lambda: tmp_path_factory.mktemp("redis-cluster"), cluster=True)
    yield start
    _stop_all(started)
# --- end of Redis fixtures ---

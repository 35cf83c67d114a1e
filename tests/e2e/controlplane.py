"""A Portico process in an etcd-backed role (control_plane, or traditional = Admin API + proxy), for the
control-plane end-to-end tests. Modelled on conftest's Portico class.

    cp = ControlPlane(tmp_path / "cp", etcd.endpoints_arg()).start()      # waits for /readyz 200
    st, headers, item = cp.admin("PUT", "/routes/1", {"uri": "/x", "upstream": {...}})
    cp.config_status()["revision"]
    cp.stop()

`admin(method, path, body=None, key=<the admin key>, headers=None)` talks to the Admin API on the process's own
--admin-listen port; `path` is relative to /apisix/admin unless it starts with /apisix/. A dict/list body is sent
as JSON, str/bytes verbatim. It returns an AdminReply, a 3-tuple (status, headers with lower-case names, body
parsed as JSON or the raw bytes when it is not JSON) with extra attributes .raw and .elapsed (seconds).
`key=None` sends no X-API-KEY. The admin key is read from --admin-key-file, or from STATE_DIR/admin.key where the
process writes the key it generates.

A traditional instance also has a proxy listener: request()/get() send one request there (conftest RawConn).
"""

import atexit
import http.client
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import LOOPBACK, PORTICO_BIN, PorticoProcess, RawConn, _LIVE_PORTICOS, _StartFailed, free_port

ADMIN_PREFIX = "/apisix/admin"
_DEFAULT = object()

DEFAULT_FLAGS = {
    "log_level": "info",
    "drain_delay": 0,
    "drain_timeout": 5,
}

TRADITIONAL_FLAGS = {
    "workers": 2,
}


_STARTED = []


def _kill_leftovers():
    for cp in list(_STARTED):
        if cp.proc is not None and cp.proc.poll() is None:
            try:
                cp.proc.send_signal(signal.SIGCONT)
                cp.proc.kill()
            except OSError:
                pass


atexit.register(_kill_leftovers)


class AdminReply(tuple):
    """(status, headers, body) with .raw (bytes) and .elapsed (seconds) on the side."""

    def __new__(cls, status, headers, data, raw, elapsed):
        obj = tuple.__new__(cls, (status, headers, data))
        obj.raw = raw
        obj.elapsed = elapsed
        return obj

    @property
    def status(self):
        return self[0]

    @property
    def headers(self):
        return self[1]

    @property
    def body(self):
        return self[2]

    def __repr__(self):
        return "<AdminReply %s %r %s>" % (self[0], self[1], (self.raw or b"")[:600])


class ControlPlane(PorticoProcess):
    def __init__(self, workdir, etcd_endpoints, role="control_plane", name=None, admin_listen=_DEFAULT, **flags):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.name = name or role
        self.etcd_endpoints = etcd_endpoints if isinstance(etcd_endpoints, str) else ",".join(etcd_endpoints)
        self.error_log_path = self.workdir / "error.log"
        self.access_log_path = self.workdir / "access.log"
        self.stdout_path = self.workdir / "stdout.log"
        self.flags = dict(DEFAULT_FLAGS)
        if role == "traditional":
            self.flags.update(TRADITIONAL_FLAGS)
        self.flags.setdefault("state_dir", str(self.workdir / "state"))
        self.flags.update(flags)
        # admin_listen: _DEFAULT = a free loopback port chosen here; None = pass no --admin-listen (the binary's
        # default); a string = passed verbatim.
        self._admin_listen = admin_listen
        self.proc = None
        self.port = None          # proxy listener (traditional only)
        self.status_port = None
        self.admin_port = None
        self.admin_host = LOOPBACK
        self._key = None
        self.admin_ssl_context = None  # an ssl.SSLContext: the Admin API is reached over HTTPS

    # -- files --------------------------------------------------------------------------------------------------
    @property
    def state_dir(self):
        return Path(self.flags["state_dir"])

    @property
    def key_file(self):
        """Where the admin key is: --admin-key-file, or STATE_DIR/admin.key."""
        return Path(self.flags.get("admin_key_file") or (self.state_dir / "admin.key"))

    @property
    def admin_key(self):
        if self._key is None:
            self._key = self.key_file.read_text().strip()
        return self._key

    # -- process ------------------------------------------------------------------------------------------------
    def argv(self):
        args = [str(PORTICO_BIN), "--role", self.role, "--etcd-endpoints", self.etcd_endpoints,
                "--status-listen", "%s:%d" % (LOOPBACK, self.status_port)]
        if self._admin_listen is _DEFAULT:
            args += ["--admin-listen", "%s:%d" % (LOOPBACK, self.admin_port)]
        elif self._admin_listen is not None:
            args += ["--admin-listen", self._admin_listen]
        if self.role == "traditional":
            args += ["--listen", "%s:%d" % (LOOPBACK, self.port)]
        flags = dict(self.flags)
        if self.role == "traditional" and "access_log" not in flags:
            flags["access_log"] = str(self.access_log_path)
        if "error_log" not in flags:
            flags["error_log"] = str(self.error_log_path)
        for k, v in flags.items():
            if v is None:
                continue
            args += ["--" + k.replace("_", "-"), str(v)]
        return args

    def _pick_ports(self):
        self.status_port = free_port()
        self.port = free_port() if self.role == "traditional" else None
        if self._admin_listen is _DEFAULT:
            self.admin_port = free_port()
        elif self._admin_listen is None:
            self.admin_port = 9180
        else:
            host, _, port = self._admin_listen.rpartition(":")
            self.admin_host = host.strip("[]") or LOOPBACK
            self.admin_port = int(port)

    def spawn(self):
        """Starts the process without waiting for anything."""
        assert PORTICO_BIN.exists(), ("portico binary not found at %s (build it: `make build` or "
                                      "`ninja -C build portico`)" % PORTICO_BIN)
        self._pick_ports()
        self._key = None
        out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(self.workdir))
        out.close()
        if self not in _LIVE_PORTICOS:
            _LIVE_PORTICOS.append(self)
        if self not in _STARTED:
            _STARTED.append(self)
        return self

    def start(self, wait_ready=True, timeout=20.0):
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_up(ready=wait_ready, timeout=timeout)
                return self
            except _StartFailed as e:
                log = self.error_log()
                if attempt < 2 and re.search(r"in use|bind", log, re.I) and self._admin_listen is _DEFAULT:
                    continue
                raise AssertionError("portico (%s) failed to start (%s)\nargv: %s\n--- log tail ---\n%s"
                                     % (self.role, e, " ".join(self.argv()), self.log_tail()))
        raise AssertionError("portico failed to start")

    def run_expect_exit(self, timeout=15.0):
        """Starts the process and waits for it to exit by itself (a refused start); returns (code, log)."""
        self.spawn()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("portico (%s) kept running; expected it to refuse to start\n--- log tail ---\n%s"
                                 % (self.role, self.log_tail()))
        if self in _LIVE_PORTICOS:
            _LIVE_PORTICOS.remove(self)
        return code, self.error_log()

    def describe(self):
        return "portico (%s)" % self.role

    def sigstop(self):
        self.signal(signal.SIGSTOP)

    def sigcont(self):
        self.signal(signal.SIGCONT)

    def stop(self, grace=15.0):
        self.terminate(grace)

    # -- Admin API ----------------------------------------------------------------------------------------------
    def admin(self, method, path, body=None, key=_DEFAULT, headers=None, timeout=30.0):
        if not path.startswith("/apisix/"):
            path = ADMIN_PREFIX + path
        hdrs = {}
        if key is _DEFAULT:
            key = self.admin_key
        if key is not None:
            hdrs["X-API-KEY"] = key
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            else:
                data = body if isinstance(body, bytes) else body.encode()
        elif method in ("PUT", "POST", "PATCH"):
            data = b""
        hdrs.update(headers or {})
        if self.admin_ssl_context is not None:
            conn = http.client.HTTPSConnection(self.admin_host, self.admin_port, timeout=timeout,
                                               context=self.admin_ssl_context)
        else:
            conn = http.client.HTTPConnection(self.admin_host, self.admin_port, timeout=timeout)
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            rh = {k.lower(): v for k, v in r.getheaders()}
            status = r.status
        finally:
            conn.close()
        elapsed = time.monotonic() - t0
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return AdminReply(status, rh, parsed, raw, elapsed)

    # -- proxy (traditional) ------------------------------------------------------------------------------------
    def conn(self, **kw):
        assert self.port, "only a traditional instance has a proxy listener"
        return RawConn(self.port, **kw)

    def request(self, method, target, host="test.local", headers=(), body=None, **kw):
        with self.conn() as c:
            return c.request(method, target, host=host, headers=headers, body=body, **kw)

    def get(self, target, **kw):
        return self.request("GET", target, **kw)


def item_value(reply):
    """The `value` of an Admin API item reply, with a readable assertion when the reply is not one."""
    st, _, body = reply
    assert isinstance(body, dict) and "value" in body, "not an item reply: %r" % (reply,)
    return body["value"]


def error_paths(body):
    """The `path` of every entry of an error body's `errors` list."""
    if not isinstance(body, dict):
        return []
    return [e.get("path") for e in (body.get("errors") or []) if isinstance(e, dict)]


def os_mode(path):
    return os.stat(path).st_mode & 0o777

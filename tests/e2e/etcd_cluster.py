"""Throw-away etcd clusters (1 or 3 members) on loopback for the control-plane end-to-end tests.

    from etcd_cluster import EtcdCluster
    c = EtcdCluster(tmp_path / "etcd", size=3).start_all()
    c.endpoints_arg()          # "http://127.0.0.1:P1,http://127.0.0.1:P2,http://127.0.0.1:P3"
    i = c.leader_index(); c.kill(i)          # SIGKILL the leader
    c.start(i)                               # restart it with the same data dir (initial-cluster-state existing)
    c.put("/apisix/routes/x", '{"uri": "/x", ...}'); c.get("/apisix/routes/x")
    c.compact(c.revision())
    c.stop_all()

Every member has its own client and peer port (free_port()) and data dir, the cluster a unique
--initial-cluster-token, and short raft timings (--heartbeat-interval 100 --election-timeout 1000) so a leader
loss costs about a second. Readiness is polled (GET /health on the member's client URL, which answers
{"health": "true"} only once the member sees a leader), never slept for. Raw reads and writes go through
`etcdctl` (as an operator would tamper with the store), status and revision through etcd's JSON gateway.

Every cluster is registered for cleanup at interpreter exit as well as by the fixtures' finalizers, and a stopped
(SIGSTOP) member is continued before it is killed.
"""

import atexit
import base64
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from conftest import LOOPBACK, free_port, wait_for

ETCD_BIN = os.environ.get("ETCD_BIN", "etcd")
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN", "etcdctl")

_LIVE = []
_LIVE_LOCK = threading.Lock()


def _cleanup_all():
    with _LIVE_LOCK:
        clusters = list(_LIVE)
    for c in clusters:
        try:
            c.destroy()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


def _b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def http_json(url, body=None, timeout=2.0, context=None):
    """POST (body given) or GET `url` with JSON; returns the parsed answer. Raises on transport or HTTP errors.
    `context`: an ssl.SSLContext for https:// URLs."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
        return json.loads(r.read() or b"{}")


class Member:
    def __init__(self, index, workdir, scheme="http"):
        self.index = index
        self.scheme = scheme
        self.name = "m%d" % index
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = Path(workdir) / ("%s.data" % self.name)
        self.log_path = Path(workdir) / ("%s.log" % self.name)
        self.proc = None
        self.stopped = False  # SIGSTOPped
        self.started_once = False

    @property
    def client_url(self):
        return "%s://%s:%d" % (self.scheme, LOOPBACK, self.client_port)

    @property
    def peer_url(self):
        return "http://%s:%d" % (LOOPBACK, self.peer_port)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


class EtcdCluster:
    def __init__(self, workdir, size=1, name="etcd", tls=None):
        """tls: a tls_certs.TestCA: clients reach the members over https with --client-cert-auth (the
        certificates are issued here: self.server_cert, and self.client_cert for Portico, etcdctl and this
        module); peers stay plain (loopback)."""
        assert size in (1, 3, 5), "size must be 1, 3 or 5"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.name = name
        self.token = "portico-e2e-%s" % uuid.uuid4().hex
        self.tls = tls
        self.ssl_context = None
        if tls is not None:
            self.server_cert = tls.issue("etcd-server", ips=[LOOPBACK], dns=["localhost"])
            self.client_cert = tls.issue("etcd-client", client=True)
            self.ssl_context = tls.context(self.client_cert)
        self.members = [Member(i, self.workdir, "https" if tls is not None else "http") for i in range(size)]
        with _LIVE_LOCK:
            _LIVE.append(self)

    # -- addresses ----------------------------------------------------------------------------------------------
    def endpoints(self):
        return [m.client_url for m in self.members]

    def endpoints_arg(self):
        return ",".join(self.endpoints())

    def live_endpoints(self):
        return [m.client_url for m in self.members if m.running() and not m.stopped]

    def initial_cluster(self):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    # -- process control ----------------------------------------------------------------------------------------
    def _argv(self, m, state):
        return [ETCD_BIN, "--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", self.initial_cluster(), "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                # As every etcd the project starts (src/store/README.md, "Compaction"); a test never writes
                # 10000 revisions, so tests that compact on purpose are not overtaken.
                "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
                "--logger", "zap", "--log-outputs", "stderr"] + self._tls_argv()

    def _tls_argv(self):
        if self.tls is None:
            return []
        return ["--cert-file", self.server_cert.cert, "--key-file", self.server_cert.key, "--client-cert-auth",
                "--trusted-ca-file", self.tls.cert]

    def portico_tls_args(self):
        """Portico's etcd TLS flags for this cluster (empty without TLS)."""
        if self.tls is None:
            return []
        return ["--etcd-cacert", self.tls.cert, "--etcd-cert", self.client_cert.cert, "--etcd-key",
                self.client_cert.key]

    def _spawn(self, i):
        m = self.members[i]
        assert not m.running(), "member %d is already running" % i
        state = "existing" if m.started_once else "new"
        log = open(m.log_path, "ab")
        log.write(("\n=== start %s (%s) at %.3f ===\n" % (m.name, state, time.time())).encode())
        log.flush()
        m.proc = subprocess.Popen(self._argv(m, state), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=str(self.workdir))
        log.close()
        m.stopped = False
        m.started_once = True

    def member_healthy(self, i):
        m = self.members[i]
        if not m.running() or m.stopped:
            return False
        try:
            return http_json(m.client_url + "/health", timeout=1.0, context=self.ssl_context).get("health") in ("true", True)
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, indexes=None, timeout=30.0):
        indexes = list(range(self.size)) if indexes is None else list(indexes)

        def ok():
            for i in indexes:
                m = self.members[i]
                if not m.running():
                    raise AssertionError("etcd member %d exited with %s:\n%s"
                                         % (i, m.proc.returncode if m.proc else None, m.log_tail()))
            return all(self.member_healthy(i) for i in indexes)

        wait_for(ok, timeout=timeout, interval=0.05,
                 message=lambda: "etcd members %s healthy\n%s" % (
                     indexes, "\n".join("--- m%d ---\n%s" % (i, self.members[i].log_tail(15)) for i in indexes)))
        return self

    def start_all(self, timeout=30.0):
        """Starts every member that is not running (new cluster the first time, existing data afterwards) and waits
        until all are healthy."""
        for i, m in enumerate(self.members):
            if m.stopped and m.running():
                self.cont(i)
            elif not m.running():
                self._spawn(i)
        return self.wait_healthy(timeout=timeout)

    def start(self, i, wait=True, timeout=30.0):
        """(Re)starts member i with its data dir (--initial-cluster-state existing after the first start)."""
        self._spawn(i)
        if wait:
            self.wait_healthy([i], timeout=timeout)
        return self

    def kill(self, i, sig=signal.SIGKILL):
        """Sends `sig` to member i. SIGSTOP/SIGCONT keep the process; other signals wait for it to exit."""
        m = self.members[i]
        if not m.running():
            return
        if sig == signal.SIGSTOP:
            m.proc.send_signal(sig)
            m.stopped = True
            return
        if sig == signal.SIGCONT:
            m.proc.send_signal(sig)
            m.stopped = False
            return
        if m.stopped:
            m.proc.send_signal(signal.SIGCONT)
            m.stopped = False
        m.proc.send_signal(sig)
        try:
            m.proc.wait(10)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait(5)

    def cont(self, i):
        self.kill(i, signal.SIGCONT)

    def stop(self, i, grace=10.0):
        m = self.members[i]
        if not m.running():
            return
        if m.stopped:
            self.cont(i)
        m.proc.terminate()
        try:
            m.proc.wait(grace)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait(5)

    def stop_all(self):
        for i in range(self.size):
            self.stop(i)

    def kill_all(self, sig=signal.SIGKILL):
        for i in range(self.size):
            self.kill(i, sig)

    def destroy(self):
        self.kill_all()
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)

    def running_indexes(self):
        return [i for i, m in enumerate(self.members) if m.running() and not m.stopped]

    # -- status -------------------------------------------------------------------------------------------------
    def member_status(self, i, timeout=1.0):
        """The JSON gateway's /v3/maintenance/status answer of member i (header, leader, raftTerm, ...)."""
        return http_json(self.members[i].client_url + "/v3/maintenance/status", {}, timeout=timeout,
                         context=self.ssl_context)

    def member_id(self, i):
        return self.member_status(i)["header"]["member_id"]

    def leader_index(self, timeout=10.0):
        """Index of the current leader as the live members report it (polls until they agree on a live one)."""

        def find():
            ids = {}
            leaders = set()
            for i in self.running_indexes():
                try:
                    st = self.member_status(i)
                except (OSError, ValueError, urllib.error.URLError):
                    continue
                ids[st["header"]["member_id"]] = i
                if st.get("leader") and st.get("leader") != "0":
                    leaders.add(st["leader"])
            if len(leaders) == 1:
                lid = leaders.pop()
                if lid in ids:
                    return ids[lid] + 1  # +1: wait_for wants a truthy value
            return None

        return wait_for(find, timeout=timeout, interval=0.05, message="an etcd leader") - 1

    def cluster_id(self):
        for i in self.running_indexes():
            try:
                return self.member_status(i)["header"]["cluster_id"]
            except (OSError, ValueError, urllib.error.URLError):
                continue
        raise AssertionError("no etcd member answers")

    def revision(self):
        """The current store revision (a linearizable range through any live member)."""
        last = None
        for i in self.running_indexes():
            try:
                ans = http_json(self.members[i].client_url + "/v3/kv/range",
                                {"key": _b64("\0"), "limit": 1}, timeout=3.0, context=self.ssl_context)
                return int(ans["header"]["revision"])
            except (OSError, ValueError, urllib.error.URLError) as e:
                last = e
        raise AssertionError("no etcd member answered a range request (%r)" % (last,))

    # -- etcdctl ------------------------------------------------------------------------------------------------
    def etcdctl(self, *args, check=True, timeout=20.0, endpoints=None, input=None):
        eps = endpoints or self.live_endpoints() or self.endpoints()
        argv = [ETCDCTL_BIN, "--endpoints", ",".join(eps), "--dial-timeout", "2s", "--command-timeout", "8s"]
        if self.tls is not None:
            argv += ["--cacert", self.tls.cert, "--cert", self.client_cert.cert, "--key", self.client_cert.key]
        argv += [str(a) for a in args]
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout,
                           input=input)
        if check and r.returncode != 0:
            raise AssertionError("etcdctl %s failed (%d): %s %s" % (" ".join(map(str, args)), r.returncode,
                                                                   r.stdout.decode(errors="replace"),
                                                                   r.stderr.decode(errors="replace")))
        return r

    def put(self, key, value):
        """etcdctl put; returns the revision of the write."""
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        # "--" keeps keys and values that start with '-' from being read as flags.
        r = self.etcdctl("put", "-w", "json", "--", key, value)
        return int(json.loads(r.stdout)["header"]["revision"])

    def get_kv(self, key):
        """{"key", "value", "create_revision", "mod_revision", "version"} of `key`, or None when absent."""
        r = self.etcdctl("get", "-w", "json", "--", key)
        ans = json.loads(r.stdout)
        kvs = ans.get("kvs") or []
        if not kvs:
            return None
        kv = kvs[0]
        return {"key": base64.b64decode(kv["key"]).decode(), "value": base64.b64decode(kv.get("value", "")).decode(),
                "create_revision": int(kv.get("create_revision", 0)), "mod_revision": int(kv.get("mod_revision", 0)),
                "version": int(kv.get("version", 0))}

    def get(self, key):
        """The value of `key` (str), or None when absent."""
        kv = self.get_kv(key)
        return None if kv is None else kv["value"]

    def get_prefix(self, prefix):
        """{key: value} for every key under `prefix`."""
        r = self.etcdctl("get", "-w", "json", "--prefix", "--", prefix)
        ans = json.loads(r.stdout)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                for kv in (ans.get("kvs") or [])}

    def keys(self, prefix):
        r = self.etcdctl("get", "--prefix", "--keys-only", "--", prefix)
        return [line for line in r.stdout.decode().splitlines() if line.strip()]

    def delete(self, key, prefix=False):
        args = ["del", "-w", "json"] + (["--prefix"] if prefix else []) + ["--", key]
        r = self.etcdctl(*args)
        return int(json.loads(r.stdout)["header"]["revision"])

    def compact(self, rev=None):
        """Compacts the store at `rev` (default: the current revision), physically; returns the revision used."""
        rev = self.revision() if rev is None else int(rev)
        self.etcdctl("compact", rev, "--physical")
        return rev

    def log_tail(self, n=20):
        return "\n".join("--- %s m%d ---\n%s" % (self.name, m.index, m.log_tail(n)) for m in self.members)

"""A Portico process in the data_plane role (hybrid sync, docs/sync-protocol.md), for the end-to-end tests.
Modelled on controlplane.py's ControlPlane.

    dp = DataPlane(tmp_path / "dp1", ["http://127.0.0.1:P3"], trusted_keys=cp.state_dir / "signing.pub",
                   token="0123456789abcdef", node_id="dp1").start()          # waits for /readyz 200
    dp.get("/id", host="a.test")            # one proxied request (conftest RawConn), a Response
    dp.config_status()["sync_revision"]; dp.metrics().value("portico_sync_revision")
    dp.snapshots()                          # cache files, oldest first
    dp.memory_kb()["VmRSS"]                 # /proc/<pid>/status figures
    dp.stop(); dp.start(wait_ready=False)   # same state dir, cache and ports

`token` is written to WORKDIR/cp.token (mode 0600) and passed as --cp-token-file. `trusted_keys` is a path or a
list of paths. The cache is --cache-dir when given, else STATE_DIR/cache (the binary's default).

The listen and status ports are chosen at the first start and kept across restarts (a client of the proxy, like
a load balancer, keeps its address); when the old port cannot be bound again a new pair is chosen.
"""

import os
import re
import subprocess
import time
from pathlib import Path

from conftest import LOOPBACK, PORTICO_BIN, Metrics, PorticoProcess, RawConn, _LIVE_PORTICOS, _StartFailed, free_port

DEFAULT_FLAGS = {
    "log_level": "info",
    "workers": 2,
    "drain_delay": 0.2,
    "drain_timeout": 5,
}

SNAPSHOT_RE = re.compile(r"^snapshot-(\d{20})\.psnap$")


class DataPlane(PorticoProcess):
    def __init__(self, workdir, control_planes, trusted_keys, token, node_id, name=None, **flags):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.control_planes = list(control_planes) if not isinstance(control_planes, str) else [control_planes]
        if isinstance(trusted_keys, (str, Path)):
            trusted_keys = [trusted_keys]
        self.trusted_keys = [str(k) for k in trusted_keys]
        self.node_id = node_id
        self.name = name or node_id
        self.error_log_path = self.workdir / "error.log"
        self.stdout_path = self.workdir / "stdout.log"
        self.token_path = self.workdir / "cp.token"
        self.token = None
        if token is not None:  # None: no --cp-token-file (mutual TLS with --cp-tls-cert)
            self.write_token(token)
        self.flags = dict(DEFAULT_FLAGS)
        self.flags.setdefault("state_dir", str(self.workdir / "state"))
        self.flags.update(flags)
        self.proc = None
        self.port = None
        self.status_port = None

    # -- files --------------------------------------------------------------------------------------------------
    def write_token(self, token):
        fd = os.open(str(self.token_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        self.token = token

    @property
    def state_dir(self):
        return Path(self.flags["state_dir"])

    @property
    def cache_dir(self):
        return Path(self.flags.get("cache_dir") or (self.state_dir / "cache"))

    def snapshots(self):
        """Cache files snapshot-<revision>.psnap, oldest revision first, as [(revision, Path)]."""
        out = []
        try:
            names = os.listdir(self.cache_dir)
        except FileNotFoundError:
            return []
        for n in names:
            m = SNAPSHOT_RE.match(n)
            if m:
                out.append((int(m.group(1)), self.cache_dir / n))
        return sorted(out)

    def snapshot_path(self, revision):
        return self.cache_dir / ("snapshot-%020d.psnap" % revision)

    def bad_files(self):
        try:
            return sorted(n for n in os.listdir(self.cache_dir) if n.endswith(".bad"))
        except FileNotFoundError:
            return []

    # -- process ------------------------------------------------------------------------------------------------
    def argv(self):
        args = [str(PORTICO_BIN), "--role", "data_plane",
                "--control-planes", ",".join(self.control_planes),
                "--trusted-keys", ",".join(self.trusted_keys),
                "--node-id", self.node_id,
                "--listen", "%s:%d" % (LOOPBACK, self.port),
                "--status-listen", "%s:%d" % (LOOPBACK, self.status_port)]
        if self.token is not None:
            args += ["--cp-token-file", str(self.token_path)]
        flags = dict(self.flags)
        flags.setdefault("access_log", "off")
        flags.setdefault("error_log", str(self.error_log_path))
        for k, v in flags.items():
            if v is None:
                continue
            args += ["--" + k.replace("_", "-"), str(v)]
        return args

    def spawn(self, new_ports=False):
        """Starts the process without waiting for anything."""
        assert PORTICO_BIN.exists(), ("portico binary not found at %s (build it: `make build` or "
                                      "`ninja -C build portico`)" % PORTICO_BIN)
        if new_ports or self.port is None:
            self.port = free_port()
            self.status_port = free_port()
        out = open(self.stdout_path, "ab")
        out.write(("\n=== start %s at %.3f ===\n" % (self.name, time.time())).encode())
        out.flush()
        self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(self.workdir))
        out.close()
        if self not in _LIVE_PORTICOS:
            _LIVE_PORTICOS.append(self)
        return self

    def start(self, wait_ready=True, timeout=20.0):
        """Starts the process; waits for /readyz 200 (wait_ready) or /healthz 200 (the process is up, whether
        or not it has a config)."""
        for attempt in range(3):
            self.spawn(new_ports=attempt > 0)
            try:
                self.wait_up(ready=wait_ready, timeout=timeout)
                return self
            except _StartFailed as e:
                if attempt < 2 and re.search(r"in use|bind", self.log_tail(20), re.I):
                    continue
                raise AssertionError("portico (data_plane %s) failed to start (%s)\nargv: %s\n--- log tail ---\n%s"
                                     % (self.name, e, " ".join(self.argv()), self.log_tail()))
        raise AssertionError("portico data plane failed to start")

    def describe(self):
        return "portico (data_plane %s)" % self.name

    def wait_diagnostics(self):
        return "\nstatus: %s" % (self.try_config_status(),)

    def kill(self):
        """SIGKILL, and wait for the exit."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)
        if self in _LIVE_PORTICOS:
            _LIVE_PORTICOS.remove(self)

    def stop(self, grace=15.0):
        """SIGTERM (graceful: drain delay, then drain), SIGKILL after `grace` seconds."""
        self.terminate(grace)

    def ready(self):
        try:
            return self.status_get("/readyz", timeout=2.0)[0] == 200
        except OSError:
            return False

    def try_config_status(self):
        """config_status(), or a description of why it could not be read (for failure messages)."""
        try:
            return self.config_status()
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return "unavailable (%r)" % (e,)

    def memory_kb(self):
        """The process's memory figures from /proc/<pid>/status, in kB: {"VmRSS": ..., "VmHWM": ..., "VmSize": ...}
        (VmHWM is the peak resident size since the start)."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.startswith("Vm") and value.strip().endswith("kB"):
                    out[name] = int(value.split()[0])
        return out

    def metrics(self):
        st, body = self.status_get("/metrics")
        assert st == 200, "/metrics -> %s" % st
        return Metrics(body.decode())

    # -- proxy --------------------------------------------------------------------------------------------------
    def conn(self, **kw):
        return RawConn(self.port, **kw)

    def request(self, method, target, host="test.local", headers=(), body=None, timeout=5.0, **kw):
        with RawConn(self.port, timeout=timeout) as c:
            return c.request(method, target, host=host, headers=headers, body=body, **kw)

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    def served(self, host, target="/id"):
        """(status, body text stripped) of GET target with Host `host`, or ("error", repr) on a transport error."""
        try:
            r = self.get(target, host=host)
        except OSError as ex:
            return ("error", repr(ex))
        return r.status, (r.body or b"").decode(errors="replace").strip()

"""Throw-away Redis servers for the rate-limit tests: a standalone `redis-server`, and a Redis Cluster of 3
masters with one replica each, created with `redis-cli --cluster create` as an operator would.

    from redis_servers import RedisServer, RedisCluster
    r = RedisServer(tmp_path / "redis").start()            # PING answered before start() returns
    r.cli("GET", "k"); r.pause(); r.resume(); r.kill(); r.start()   # same port, same data (none is saved)
    c = RedisCluster(tmp_path / "rc").start()              # cluster_state:ok and every slot covered
    c.seeds()                                              # [("127.0.0.1", P1), ...] the masters
    c.fail_over_master(0)                                  # SIGKILL master 0, wait for its replica to take over
    c.destroy()

Every server runs without persistence (--save '' --appendonly no) on a free loopback port, in its own working
directory, with its log there. Readiness is polled (PING; CLUSTER INFO for the cluster), never slept for.
Servers are registered for cleanup at interpreter exit as well as by the fixtures' finalizers; a paused
(SIGSTOP) server is continued before it is stopped.
"""

import atexit
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import LOOPBACK, free_port, wait_for

REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI_BIN", "redis-cli")

_LIVE = []
_LIVE_LOCK = threading.Lock()


def _cleanup_all():
    with _LIVE_LOCK:
        live = list(_LIVE)
    for s in live:
        try:
            s.destroy()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


class RedisServer:
    """One redis-server process. `password` sets requirepass (the default user's password); `extra` are more
    command-line options ("--cluster-enabled", "yes", ...)."""

    def __init__(self, workdir, port=None, password=None, extra=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.password = password
        self.extra = list(extra)
        self.proc = None
        self.paused = False
        self.name = "redis-%d" % self.port
        self.log_path = self.workdir / "redis.log"
        with _LIVE_LOCK:
            _LIVE.append(self)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self, wait=True):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--logfile", str(self.log_path), "--daemonize", "no",
                "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.paused = False
        if wait:
            wait_for(self.ping, timeout=10, message=lambda: "redis on %s (log: %s)" % (self.address,
                                                                                      self.log_tail()))
        return self

    def cli(self, *args, timeout=5):
        """Runs one command through redis-cli; returns its stdout stripped (raw mode, so integers are plain)."""
        cmd = [REDIS_CLI, "-h", self.host, "-p", str(self.port), "--no-auth-warning", "--raw"]
        if self.password:
            cmd += ["-a", self.password]
        out = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
        return out.stdout.strip()

    def ping(self):
        return self.proc is not None and self.proc.poll() is None and self.cli("PING", timeout=2) == "PONG"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pause(self):
        """SIGSTOP: the server keeps its connections and answers nothing (a stalled Redis)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self):
        """SIGKILL (a crash): connections are reset, the port refuses until start() again."""
        if self.running():
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait(5)

    def stop(self):
        if self.running():
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def destroy(self):
        self.stop()
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)

    def log_tail(self, n=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class RedisCluster:
    """3 masters + `replicas` replicas each, cluster-enabled, created by redis-cli --cluster create."""

    def __init__(self, workdir, masters=3, replicas=1, password=None):
        self.workdir = Path(workdir)
        self.password = password
        self.masters = masters
        self.replicas = replicas
        self.nodes = []
        for i in range(masters * (1 + replicas)):
            port = free_port()
            d = self.workdir / ("node-%d" % i)
            # The cluster bus gets a port of its own (Redis 7's cluster-port), not the default port + 10000,
            # which may be taken or in the ephemeral range.
            self.nodes.append(RedisServer(d, port=port, password=password, extra=[
                "--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--repl-diskless-sync-delay", "0",
                "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"]
                + (["--masterauth", password] if password else [])))
        self.name = "redis-cluster"

    def start(self):
        for n in self.nodes:
            n.start()
        cmd = [REDIS_CLI, "--cluster", "create"] + [n.address for n in self.nodes] + \
              ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        if self.password:
            cmd += ["-a", self.password, "--no-auth-warning"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed: %s %s" % (out.stdout[-2000:], out.stderr[-2000:]))
        wait_for(self.healthy, timeout=30, message="redis cluster state ok on every node")
        # A replica promoted before its first sync would serve an empty data set: ready means every replica's
        # link to its master is up (the first full sync done).
        wait_for(self.replicas_synced, timeout=30, message="every replica synced with its master")
        return self

    def replicas_synced(self):
        replicas = [n for n in self.nodes if n.running() and n.cli("ROLE").splitlines()[:1] == ["slave"]]
        return len(replicas) == self.masters * self.replicas and all(
            "master_link_status:up" in r.cli("INFO", "replication") for r in replicas)

    def healthy(self):
        for n in self.nodes:
            if not n.running():
                continue
            info = n.cli("CLUSTER", "INFO")
            if "cluster_state:ok" not in info or "cluster_slots_assigned:16384" not in info:
                return False
        return True

    def master_nodes(self):
        """The running nodes that are masters now (by their own ROLE), in node order."""
        out = []
        for n in self.nodes:
            if n.running() and not n.paused and n.cli("ROLE").splitlines()[:1] == ["master"]:
                out.append(n)
        return out

    def seeds(self):
        return [(n.host, n.port) for n in self.master_nodes()]

    def seeds_arg(self):
        return ["%s:%d" % s for s in self.seeds()]

    def node_for_key(self, key):
        """The master serving `key` now (CLUSTER KEYSLOT + CLUSTER SLOTS asked of any live node)."""
        live = [n for n in self.nodes if n.running() and not n.paused]
        slot = int(live[0].cli("CLUSTER", "KEYSLOT", key))
        for m in self.master_nodes():
            for line in m.cli("CLUSTER", "NODES").splitlines():
                f = line.split()
                if "myself" in f[2] and "master" in f[2]:
                    for rng in f[8:]:
                        if rng.startswith("["):
                            continue
                        lo, _, hi = rng.partition("-")
                        if int(lo) <= slot <= int(hi or lo):
                            return m
        return None

    def fail_over_master(self, index=0, timeout=30):
        """SIGKILLs the index-th current master and waits until a replica has taken its slots over (cluster_state
        ok again as seen by the survivors). Returns the killed node."""
        victim = self.master_nodes()[index]
        replicas = [n for n in self.nodes if n.running() and n.cli("ROLE").splitlines()[:3] ==
                    ["slave", victim.host, str(victim.port)]]
        victim.kill()

        def promoted():
            return any(r.cli("ROLE").splitlines()[:1] == ["master"] for r in replicas) and self.healthy()

        wait_for(promoted, timeout=timeout, message="a replica of %s promoted, cluster ok" % victim.address)
        return victim

    def destroy(self):
        for n in self.nodes:
            n.destroy()

    def stop(self):
        self.destroy()

    def log_tail(self):
        return "\n".join("%s: %s" % (n.address, n.log_tail(5)) for n in self.nodes)

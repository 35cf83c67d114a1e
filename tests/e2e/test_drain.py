"""Graceful shutdown on SIGTERM: readiness flips first, the listener closes after --drain-delay, in-flight work
finishes, keep-alive connections are wound down, and the process exits 0 within --drain-timeout.

The zero-failure test puts HAProxy in front of two instances, the way a load balancer would: it health-checks
/readyz on the status port, so it stops sending new work to a draining instance before its listener closes."""

import csv
import io
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import stop_process, LOOPBACK, RawConn, free_port, make_config, route, wait_for

HAPROXY = "/usr/sbin/haproxy"


class HAProxy:
    def __init__(self, workdir, servers, keepalive):
        self.port = free_port()
        self.stats_port = free_port()
        lines = [
            "global",
            "    maxconn 4000",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout http-keep-alive 30s",
            "    retries 3",
            "    option redispatch 1",
        ]
        if keepalive:
            # Server-side keep-alive: an idle pooled connection closed by a draining server at the very moment
            # HAProxy reuses it is the inherent keep-alive race, which a load balancer retries.
            lines += ["    http-reuse safe", "    retry-on conn-failure empty-response"]
        else:
            lines += ["    option http-server-close", "    retry-on conn-failure"]
        lines += [
            "frontend fe",
            "    bind %s:%d" % (LOOPBACK, self.port),
            "    default_backend be",
            "backend be",
            "    balance roundrobin",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
        ]
        for name, port, status_port in servers:
            lines.append("    server %s %s:%d check port %d inter 100ms fastinter 100ms downinter 100ms fall 1 rise 1"
                         % (name, LOOPBACK, port, status_port))
        lines += [
            "listen stats",
            "    bind %s:%d" % (LOOPBACK, self.stats_port),
            "    stats enable",
            "    stats uri /stats",
        ]
        self.cfg = workdir / "haproxy.cfg"
        self.cfg.write_text("\n".join(lines) + "\n")
        self.log = workdir / "haproxy.log"
        chk = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        assert chk.returncode == 0, "haproxy config check failed:\n%s%s" % (chk.stdout, chk.stderr)
        out = open(self.log, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()

    def stats(self):
        """{svname: csv row} for the backend's servers and the BACKEND line."""
        with urllib.request.urlopen("http://%s:%d/stats;csv" % (LOOPBACK, self.stats_port), timeout=2) as r:
            text = r.read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "be"}

    def server_status(self):
        return {k: v["status"] for k, v in self.stats().items()}

    def stop(self):
        stop_process(self.proc)


def readyz_status(p):
    try:
        return p.status_get("/readyz", timeout=1)[0]
    except OSError:
        return None


def connect_refused(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((LOOPBACK, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


@pytest.mark.parametrize("keepalive", [True, False], ids=["lb-keepalive", "lb-server-close"])
def test_sigterm_under_load_behind_haproxy_loses_nothing(origin, portico, wrk, tmp_path, keepalive):
    o = origin("drain")
    cfg = make_config([route("r", "/id", o)])
    drain_delay, drain_timeout = 1.0, 5.0
    p1 = portico(cfg, name="p1", drain_delay=drain_delay, drain_timeout=drain_timeout)
    p2 = portico(cfg, name="p2", drain_delay=drain_delay, drain_timeout=drain_timeout)
    lb = HAProxy(tmp_path, [("p1", p1.port, p1.status_port), ("p2", p2.port, p2.status_port)], keepalive)
    try:
        wait_for(lambda: lb.server_status() == {"p1": "UP", "p2": "UP", "BACKEND": "UP"}, timeout=10,
                 message=lambda: "haproxy to see both instances UP (%s)" % lb.log.read_text()[-2000:])
        run = wrk("http://%s:%d/id" % (LOOPBACK, lb.port), connections=20, duration=6, threads=2)
        # Let real traffic flow through both instances for a while first, so p1 is busy when it gets SIGTERM.
        wait_for(lambda: all(p.metrics().value("portico_http_requests_total", route="r") > 1500 for p in (p1, p2)),
                 timeout=5, interval=0.05, message="load reaching both instances")
        t0 = time.monotonic()
        p1.sigterm()
        saw_503 = wait_for(lambda: readyz_status(p1) == 503, timeout=0.5, interval=0.01,
                           message="/readyz 503 right after SIGTERM")
        assert saw_503
        rc = p1.wait_exit(drain_timeout + 2)
        exit_after = time.monotonic() - t0
        assert rc == 0, "draining instance exited with %r" % rc
        assert exit_after <= drain_timeout + 0.5, "exit took %.1fs (drain timeout %.1fs)" % (exit_after, drain_timeout)
        assert exit_after >= drain_delay - 0.1, "exited before the drain delay (%.2fs)" % exit_after
        log = p1.error_log()
        assert "draining" in log and "exiting" in log, log[-2000:]
        before = p2.metrics().value("portico_http_requests_total", route="r")
        res = run.wait()
        print("drain behind haproxy: exit after %.2fs; wrk %s" % (exit_after, {k: v for k, v in res.items()
                                                                          if k != "output"}))
        st = lb.stats()
        counters = {sv: {k: st[sv][k] for k in ("status", "stot", "econ", "eresp", "wretr", "wredis")}
                    for sv in ("p1", "p2", "BACKEND")}
        print("haproxy counters: %s" % counters)
        assert counters["p1"]["status"] != "UP"
        for sv in ("p1", "BACKEND"):
            assert counters[sv]["econ"] == "0" and counters[sv]["eresp"] == "0", counters
            if not keepalive:
                # No connection was ever refused or cut: zero failures are portico's doing, not HAProxy's retries.
                assert counters[sv]["wretr"] == "0" and counters[sv]["wredis"] == "0", counters
        after = p2.metrics().value("portico_http_requests_total", route="r")
        assert after > before, "the surviving instance served nothing after the drain"
        assert res["requests"] > 1000, res
        assert res["non2xx"] == 0, "failed requests while draining: %s" % res
        assert res["socket_errors"] == 0, "socket errors while draining: %s" % res
        assert p2.running()
    finally:
        lb.stop()


def test_inflight_request_on_keepalive_connection_finishes_with_connection_close(origin, portico):
    o = origin("inflight")
    p = portico(make_config([route("r", "/*", o)]), drain_delay=0.5, drain_timeout=5)
    with RawConn(p.port, timeout=10) as c:
        r = c.request("GET", "/id")
        assert r.status == 200 and "close" not in r.connection_tokens()
        c.send(b"GET /delay/1500?m=inflight-1 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: o.seen("inflight-1"), timeout=3, message="the slow request to reach the origin")
        t0 = time.monotonic()
        p.sigterm()
        r = c.read_response()
        assert r.status == 200 and r.body == b"delayed 1500\n", r
        assert "close" in r.connection_tokens(), "response on a busy keep-alive connection during drain " \
                                                 "lacks Connection: close: %r" % r
        assert c.wait_closed(3)
    rc = p.wait_exit(6)
    assert rc == 0, rc
    assert time.monotonic() - t0 < 5.5
    log = p.error_log()
    assert "draining" in log and "exiting" in log


def test_idle_keepalive_connection_closed_during_drain(origin, portico):
    o = origin("idle")
    p = portico(make_config([route("r", "/*", o)]), drain_delay=0.3, drain_timeout=8)
    idle = RawConn(p.port, timeout=10)
    busy = RawConn(p.port, timeout=10)
    try:
        assert idle.request("GET", "/id").status == 200
        busy.send(b"GET /delay/3000?m=busy-1 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: o.seen("busy-1"), timeout=3, message="the slow request to reach the origin")
        p.sigterm()
        # The idle connection is closed as part of draining, while the busy one keeps the process alive.
        assert idle.wait_closed(2.5), "idle keep-alive connection not closed during drain"
        assert p.running(), "process exited before the in-flight request finished"
        r = busy.read_response()
        assert r.status == 200 and "close" in r.connection_tokens(), r
    finally:
        idle.close()
        busy.close()
    assert p.wait_exit(8) == 0


def test_readyz_flips_at_once_and_listener_closes_after_drain_delay(origin, portico):
    o = origin("delay")
    drain_delay = 1.0
    p = portico(make_config([route("r", "/*", o)]), drain_delay=drain_delay, drain_timeout=8)
    busy = RawConn(p.port, timeout=10)
    try:
        busy.send(b"GET /delay/3000?m=keep-alive-proc HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: o.seen("keep-alive-proc"), timeout=3, message="the slow request to reach the origin")
        assert readyz_status(p) == 200
        t0 = time.monotonic()
        p.sigterm()
        wait_for(lambda: readyz_status(p) == 503, timeout=0.3, interval=0.01,
                 message="/readyz to turn 503 immediately after SIGTERM")
        assert p.status_get("/healthz")[0] == 200, "/healthz must stay 200 while draining"
        # Within the drain delay the listener still accepts and serves (the LB may not have noticed yet).
        with RawConn(p.port, timeout=5) as c:
            r = c.request("GET", "/id")
            assert r.status == 200
        assert time.monotonic() - t0 < drain_delay - 0.2, "test too slow to check the drain-delay window"
        wait_for(lambda: connect_refused(p.port), timeout=drain_delay + 1.5, interval=0.02,
                 message="the listener to close after the drain delay")
        closed_after = time.monotonic() - t0
        assert closed_after >= drain_delay - 0.15, "listener closed %.2fs after SIGTERM, before the drain delay" \
            % closed_after
        assert p.running()
        r = busy.read_response()
        assert r.status == 200
    finally:
        busy.close()
    assert p.wait_exit(8) == 0


def test_drain_timeout_bounds_exit(origin, portico):
    o = origin("stuck")
    drain_timeout = 2.0
    p = portico(make_config([route("r", "/*", o)]), drain_delay=0, drain_timeout=drain_timeout)
    stuck = RawConn(p.port, timeout=15)
    try:
        stuck.send(b"GET /delay/10000?m=stuck-1 HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: o.seen("stuck-1"), timeout=3, message="the slow request to reach the origin")
        t0 = time.monotonic()
        p.sigterm()
        rc = p.wait_exit(drain_timeout + 3)
        took = time.monotonic() - t0
        assert rc is not None, "still running %.1fs after SIGTERM with a %.1fs drain timeout" % (took, drain_timeout)
        assert took <= drain_timeout + 1.0, "exit took %.2fs" % took
        assert rc == 0, rc
        assert stuck.wait_closed(2)
    finally:
        stuck.close()

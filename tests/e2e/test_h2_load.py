"""HTTP/2 under a real load generator (h2load, Debian nghttp2-client): a client that keeps N < 128 requests in
flight on one connection is never refused a stream. A stream completed on the wire frees its slot at once; only
a stream the client reset keeps it until its session has finished (rapid reset, test_h2_defenses.py). Before
that distinction, the client's next HEADERS often arrived before the previous streams' sessions had unwound,
and h2load -m 100 saw hundreds of REFUSED_STREAM resets per 100k requests.

The origin is nginx (a Python origin is too slow to batch 100 responses into one write, which is what exposes
the race). Counts are bounded (-n), not timed: the test asserts outcomes, not speed."""

import subprocess

import pytest

from conftest import LOOPBACK, free_port, make_config, route, wait_for

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen {addr};
    location / {{ return 200 "hello h2load\\n"; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def nginx_origin(tmp_path_factory):
    d = tmp_path_factory.mktemp("nginx-origin")
    port = free_port()
    (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, addr="%s:%d" % (LOOPBACK, port)))
    proc = subprocess.Popen(["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def up():
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://%s:%d/" % (LOOPBACK, port)], capture_output=True, text=True)
        return r.stdout == "200"

    wait_for(up, timeout=10)
    yield "%s:%d" % (LOOPBACK, port)
    proc.terminate()
    proc.wait(timeout=10)


def h2load(url, *args):
    out = subprocess.run(["h2load", "-t1", *args, url], capture_output=True, text=True, timeout=120).stdout
    line = next(l for l in out.splitlines() if l.startswith("requests:"))
    f = line.replace(",", "").split()
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    return {"total": int(f[1]), "succeeded": int(f[7]), "failed": int(f[9]), "errored": int(f[11])}, out


@pytest.mark.parametrize("streams", [100, 127])
def test_many_streams_in_flight_are_never_refused(portico_module, nginx_origin, streams):
    p = portico_module(make_config([route("all", "/*", nginx_origin)]), access_log="off",
                       http2_max_requests=1000000)
    n = 200000
    r, out = h2load("http://%s:%d/" % (LOOPBACK, p.port), "-c1", "-m%d" % streams, "-n%d" % n)
    assert r["succeeded"] == n and r["failed"] == 0 and r["errored"] == 0, out

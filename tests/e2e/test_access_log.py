"""Access log: one JSON object per line per request, with the documented fields; `off` disables it."""

import json

from conftest import RawConn, make_config, route, wait_for

FIELDS = ["time", "remote_addr", "method", "uri", "host", "status", "bytes_sent", "request_time", "upstream_addr",
          "upstream_status", "upstream_time", "route_id"]


def entries(p):
    out = []
    for line in p.access_log_lines():
        out.append(json.loads(line))  # every line must be a JSON object
    return out


def test_json_lines_with_required_fields(origin, portico):
    o = origin("al")
    p = portico(make_config([route("r1", "/echo", o), route("r2", "/status/*", o)]))
    with RawConn(p.port, source="127.0.0.3") as c:
        assert c.request("GET", "/echo?q=1", host="a.test").status == 200
        assert c.request("POST", "/echo", host="b.test", body=b"0123456789").status == 200
        assert c.request("GET", "/nope", host="c.test").status == 404
        assert c.request("GET", "/status/503", host="d.test").status == 503

    lines = wait_for(lambda: len(entries(p)) >= 4 and entries(p), timeout=5,
                     message="4 access log lines (is the access log flushed?)")
    assert len(lines) == 4, lines
    for e in lines:
        assert isinstance(e, dict)
        missing = [f for f in FIELDS if f not in e]
        assert not missing, "access log line lacks %s: %r" % (missing, e)
        assert e["remote_addr"] == "127.0.0.3"
        assert float(e["request_time"]) >= 0
        assert int(e["bytes_sent"]) > 0
        assert e["time"]

    by_host = {e["host"]: e for e in lines}
    get = by_host["a.test"]
    assert get["method"] == "GET" and get["uri"] in ("/echo?q=1", "/echo")
    assert int(get["status"]) == 200 and int(get["upstream_status"]) == 200
    assert get["upstream_addr"] == o.node
    assert get["route_id"] == "r1"
    assert float(get["upstream_time"]) >= 0

    post = by_host["b.test"]
    assert post["method"] == "POST" and int(post["status"]) == 200 and post["route_id"] == "r1"

    nf = by_host["c.test"]
    assert int(nf["status"]) == 404 and nf["uri"] == "/nope"
    assert nf["route_id"] in ("", None) and nf["upstream_addr"] in ("", None, "-")

    err = by_host["d.test"]
    assert int(err["status"]) == 503 and int(err["upstream_status"]) == 503 and err["route_id"] == "r2"
    assert int(err["bytes_sent"]) >= len(b"status 503\n")


def test_bytes_sent_counts_body(origin, portico):
    o = origin("alb")
    p = portico(make_config([route("r", "/bytes/*", o)]))
    assert p.get("/bytes/100000").status == 200
    e = wait_for(lambda: entries(p), timeout=5, message="an access log line")[0]
    assert 100000 < int(e["bytes_sent"]) < 101000, e


def test_access_log_off(origin, portico):
    o = origin("aloff")
    p = portico(make_config([route("r", "/echo", o)]), access_log="off")
    before = set(p.workdir.iterdir())
    for _ in range(5):
        assert p.get("/echo").status == 200
    # Flush/close everything the process might buffer, then look for any trace of an access log.
    p.stop()
    created = set(p.workdir.iterdir()) - before
    assert not created, "files created with --access-log off: %s" % created
    assert not (p.workdir / "off").exists()
    assert not p.access_log_path.exists()
    for line in p.error_log().splitlines():
        assert '"route_id"' not in line and '"upstream_addr"' not in line, "access log line written: %s" % line

"""limit-count, limit-req and limit-conn on Redis (docs/plugins/limits-redis.md): real redis-server processes
(redis_servers.py), plain Portico instances sharing them. Two instances with one limit of N admit exactly N
together; a Redis Cluster keeps limiting through a master failover; Redis killed or stalled costs at most one
redis_timeout per request and never blocks a worker, readiness or another route, and the limits resume by
themselves; batched mode (sync_interval) stays within its stated bound."""

import concurrent.futures
import http.client
import socket
import threading
import time

from conftest import LOOPBACK, blast, make_config, route, wait_for


def redis_conf(r, **kw):
    c = {"policy": "redis", "redis_host": LOOPBACK, "redis_port": r.port}
    if getattr(r, "password", None):
        c["redis_password"] = r.password
    c.update(kw)
    return c


def count_conf(r, count, **kw):
    c = redis_conf(r, count=count, time_window=60, key_type="constant", key="k")
    c.update(kw)
    return c


def get(p, target, **kw):
    return p.request("GET", target, **kw)


def add(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def test_limit_count_of_n_shared_by_two_instances_admits_exactly_n(origin, portico, redis):
    r = redis()
    o = origin("o")
    cfg = make_config([route("rc", "/id", o, plugins={"limit-count": count_conf(
        r, 100, rejected_msg="too many")})])
    p1, p2 = portico(cfg, name="a"), portico(cfg, name="b")
    first = get(p1, "/id")
    assert first.status == 200
    assert first.header("X-RateLimit-Limit") == "100"
    assert first.header("X-RateLimit-Remaining") == "99"
    assert 59 <= int(first.header("X-RateLimit-Reset")) <= 60
    assert get(p2, "/id").header("X-RateLimit-Remaining") == "98"
    counts = {200: 2}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for c in pool.map(lambda p: blast(p.port, "/id", threads=3, seconds=1.5), [p1, p2]):
            counts = add(counts, c)
    assert set(counts) == {200, 503}, counts
    assert counts[200] == 100, counts
    last = get(p2, "/id")
    assert last.status == 503 and last.json() == {"error_msg": "too many"}
    assert last.header("X-RateLimit-Remaining") == "0"
    # The counter lives in Redis: one hash-tagged key, counting up, expiring with the window.
    keys = r.cli("KEYS", "portico:lc:*").split()
    assert len(keys) == 1 and keys[0].endswith("}") and "{" in keys[0], keys
    assert r.cli("GET", keys[0]) == "100"
    assert 0 < int(r.cli("PTTL", keys[0])) <= 60000


def test_sliding_window_on_redis(origin, portico, redis):
    r = redis(password="s3cret")
    o = origin("o")
    conf = count_conf(r, 5, window_type="sliding", time_window=3600)
    p = portico(make_config([route("rs", "/id", o, plugins={"limit-count": conf})]))
    assert [get(p, "/id").status for _ in range(7)] == [200] * 5 + [503] * 2
    keys = r.cli("KEYS", "portico:lcs:*").split()
    assert len(keys) == 1
    assert r.cli("HGET", keys[0], "c") == "5"


def test_limit_req_on_redis_shared_by_two_instances(origin, portico, redis):
    r = redis()
    o = origin("o")
    fast = redis_conf(r, rate=0.5, burst=0, key_type="var", key="http_x_k", nodelay=True)
    slow = redis_conf(r, rate=2, burst=1, key_type="var", key="http_x_k")
    cfg = make_config([route("rq", "/id", o, plugins={"limit-req": fast}),
                       route("rq2", "/echo", o, plugins={"limit-req": slow})])
    p1, p2 = portico(cfg, name="a"), portico(cfg, name="b")
    h = [("X-K", "one")]
    assert get(p1, "/id", headers=h).status == 200
    assert get(p2, "/id", headers=h).status == 503  # the bucket is shared: one per 2 s
    assert get(p1, "/id", headers=[("X-K", "two")]).status == 200  # another key
    # Without nodelay a request within the burst waits for the bucket (excess / rate: 0.5 s); above it, 503.
    def timed_echo(p):
        t0 = time.monotonic()
        return get(p, "/echo", headers=h).status, time.monotonic() - t0

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        got = sorted(pool.map(timed_echo, [p1, p2, p1]), key=lambda x: x[1])
    assert [st for st, _ in got] == [503, 200, 200] or [st for st, _ in got] == [200, 503, 200], got
    assert got[2][1] >= 0.3, got  # the delayed one
    assert r.cli("KEYS", "portico:lr:*").count("portico:lr:") == 3


def lease_keys(r):
    return r.cli("KEYS", "limit_conn:leases:{*").split()


def redis_ms(r):
    sec, usec = r.cli("TIME").split()
    return int(sec) * 1000 + int(usec) // 1000


def test_limit_req_on_redis_with_a_very_small_rate(origin, portico, redis):
    r = redis()
    o = origin("o")
    slow = redis_conf(r, rate=0.0001, burst=0, key_type="var", key="remote_addr", nodelay=True)
    p = portico(make_config([route("rt", "/id", o, plugins={"limit-req": slow})]))
    assert get(p, "/id").status == 200
    assert get(p, "/id").status == 503  # one per 10 000 s: not a division by zero (500)
    key = r.cli("KEYS", "portico:lr:*").split()[0]
    # The key lives until the bucket drained: 10 000 s at 0.0001/s (not rounded to another rate).
    assert 9990 * 1000 <= int(r.cli("PTTL", key)) <= 10001 * 1000
    assert float(r.cli("HGET", key, "e")) == 0


def test_limit_conn_on_redis_counts_requests_in_flight_across_instances(origin, portico, redis):
    r = redis()
    o = origin("o")
    conf = redis_conf(r, conn=1, burst=0, default_conn_delay=0.1, key_type="var", key="http_x_k")
    cfg = make_config([route("cn", "/delay/*", o, plugins={"limit-conn": conf})])
    p1, p2 = portico(cfg, name="a"), portico(cfg, name="b")
    h = [("X-K", "c")]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, p1, "/delay/1500", headers=h)
        key = wait_for(lambda: [k for k in lease_keys(r) if r.cli("ZCARD", k) == "1"],
                       timeout=5, message="the request in flight holds a lease in Redis")[0]
        assert 0 < int(r.cli("TTL", key)) <= 300
        assert get(p2, "/delay/0", headers=h).status == 503
        assert held.result().status == 200
    # The release is a ZREM of the request's lease, sent after the log phase.
    wait_for(lambda: r.cli("ZCARD", key) == "0", timeout=5, message="released")
    assert get(p2, "/delay/0", headers=h).status == 200
    # (its lease is released after the log phase, which follows the answer)
    wait_for(lambda: r.cli("ZCARD", key) == "0", timeout=5, message="released")
    # A client that goes away mid-request gives its slot back too.
    s = socket.create_connection((LOOPBACK, p1.port))
    s.sendall(b"GET /delay/3000 HTTP/1.1\r\nHost: test.local\r\nX-K: c\r\n\r\n")
    wait_for(lambda: r.cli("ZCARD", key) == "1", timeout=5, message="counted")
    s.close()
    wait_for(lambda: r.cli("ZCARD", key) == "0", timeout=5, message="released after the client left")
    assert get(p2, "/delay/0", headers=h).status == 200


def test_limit_conn_lease_never_released_stops_counting_at_its_expiry(origin, portico, redis):
    r = redis()
    o = origin("o")
    conf = redis_conf(r, conn=1, burst=0, default_conn_delay=0.1, key_type="var", key="remote_addr")
    p = portico(make_config([route("cl", "/delay/*", o, plugins={"limit-conn": conf})]))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, p, "/delay/800")
        key = wait_for(lambda: lease_keys(r), timeout=5, message="lease")[0]
        assert held.result().status == 200
    # Leases whose release never came (a data plane that died mid-request): one expired, one expiring soon.
    now = redis_ms(r)
    r.cli("ZADD", key, str(now - 1), "dead-dp:0:1")
    assert get(p, "/delay/0").status == 200  # the expired one no longer counts
    r.cli("ZADD", key, str(now + 1500), "dead-dp:0:2")
    assert get(p, "/delay/0").status == 503  # a live one does: conn = 1
    wait_for(lambda: get(p, "/delay/0").status == 200, timeout=5, interval=0.1,
             message="the leaked lease expired by itself")
    assert redis_ms(r) >= now + 1500
    assert r.cli("ZSCORE", key, "dead-dp:0:2") == ""  # dropped by the admission that followed


def test_limit_conn_requests_lost_in_a_redis_stall_do_not_lock_the_key_out(origin, portico, redis):
    """Admissions that time out may still run in Redis (SIGSTOP: they wait in the socket); their leases are
    ZREMed once Redis answers again, so the key is free at once rather than after the leases' expiry."""
    r = redis()
    o = origin("o")
    conf = redis_conf(r, conn=2, burst=0, default_conn_delay=0.1, key_type="var", key="remote_addr",
                      redis_timeout=300)
    # One worker: a worker ZREMs the leases it abandoned before its own next admission, so with several the
    # "admits again" probe below could land on a worker that owes nothing while another still owes a lease
    # (docs/plugins/limits-redis.md: orphans are flushed by their worker's next admission, else expire).
    p = portico(make_config([route("cs", "/delay/*", o, plugins={"limit-conn": conf})]), workers=1)
    assert get(p, "/delay/0").status == 200
    r.pause()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            stalled = list(pool.map(lambda _: get(p, "/delay/0").status, range(4)))
        assert set(stalled) == {500}, stalled
    finally:
        r.resume()
    # Redis ran what was written before the stall: conn = 2 leases exist, with nobody to release them.
    wait_for(lambda: sum(int(r.cli("ZCARD", k)) for k in lease_keys(r)) == 2, timeout=5,
             message="the stalled admissions ran")
    wait_for(lambda: get(p, "/delay/0").status == 200, timeout=5, interval=0.1, message="admits again")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: get(p, "/delay/600").status, range(2)))
    assert both == [200, 200], both  # conn = 2 slots, none leaked
    wait_for(lambda: all(r.cli("ZCARD", k) == "0" for k in lease_keys(r)), timeout=5, message="all released")


def failure_config(o, r, timeout_ms):
    strict = count_conf(r, 1000000, redis_timeout=timeout_ms)
    degrade = count_conf(r, 1000000, redis_timeout=timeout_ms, allow_degradation=True, key="d")
    return make_config([route("strict", "/id", o, host="strict.test", plugins={"limit-count": strict}),
                        route("degrade", "/id", o, host="degrade.test", plugins={"limit-count": degrade}),
                        route("free", "/id", o, host="free.test")])


def timed(p, host):
    t0 = time.monotonic()
    resp = p.request("GET", "/id", host=host)
    return resp, time.monotonic() - t0


def test_redis_killed_mid_load_with_and_without_degradation(origin, portico, redis):
    r = redis()
    o = origin("o")
    p = portico(failure_config(o, r, 500))
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        loads = [pool.submit(blast, p.port, "/id", 2, 30, stop)]
        assert timed(p, "strict.test")[0].status == 200
        r.kill()
        wait_for(lambda: timed(p, "strict.test")[0].status == 500, timeout=5, message="strict fails")
        resp, took = timed(p, "strict.test")
        assert resp.status == 500 and resp.json() == {"error_msg": "failed to limit count"}
        assert took < 0.25, took  # the breaker answers at once (connection refused: no timeout either)
        resp, took = timed(p, "degrade.test")
        assert resp.status == 200 and took < 0.25
        assert timed(p, "free.test")[0].status == 200
        assert p.status_get("/readyz")[0] == 200
        r.start()
        wait_for(lambda: timed(p, "strict.test")[0].status == 200, timeout=10, message="limits resume")
        stop.set()
        loads[0].result()


def test_redis_stalled_costs_one_timeout_then_the_breaker_answers(origin, portico, redis):
    r = redis()
    o = origin("o")
    p = portico(failure_config(o, r, 300))
    assert timed(p, "strict.test")[0].status == 200
    assert timed(p, "degrade.test")[0].status == 200
    r.pause()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            stalled = [pool.submit(timed, p, "strict.test") for _ in range(3)]
            # While those wait for Redis, a route without limits answers at once: no worker is blocked.
            for _ in range(5):
                resp, took = timed(p, "free.test")
                assert resp.status == 200 and took < 0.2, took
            assert p.status_get("/readyz")[0] == 200
            for f in stalled:
                resp, took = f.result()
                assert resp.status == 500 and took < 0.3 + 0.25, took
        # The breaker is open now: failures are immediate.
        resp, took = timed(p, "strict.test")
        assert resp.status == 500 and took < 0.1, took
        resp, took = timed(p, "degrade.test")
        assert resp.status == 200 and took < 0.4, took
    finally:
        r.resume()
    wait_for(lambda: timed(p, "strict.test")[0].status == 200, timeout=10, message="limits resume")
    assert p.status_get("/readyz")[0] == 200


def test_redis_cluster_policy_through_a_master_failover(origin, portico, redis_cluster):
    c = redis_cluster()
    # A new replica's first full sync waits repl-diskless-sync-delay (5 s): until its link is up, a failover
    # would promote an empty replica. Wait for it, as an operator would before taking traffic.
    wait_for(lambda: all("master_link_status:up" in x.cli("INFO", "replication") for x in c.nodes
                         if "role:slave" in x.cli("INFO", "replication")), timeout=20, interval=0.1,
             message="replicas in sync")
    o = origin("o")
    n = 300
    conf = {"policy": "redis-cluster", "redis_cluster_nodes": c.seeds_arg(), "redis_cluster_name": "rc",
            "redis_timeout": 500, "count": n, "time_window": 120, "key_type": "var", "key": "arg_k"}
    p = portico(make_config([route("cl", "/id", o, plugins={"limit-count": conf})]))
    keys = ["k%d" % i for i in range(6)]  # spread over the masters
    results = {k: {} for k in keys}
    failures = []  # (start, seconds) of every request answered 500
    lock = threading.Lock()
    stop = threading.Event()

    def load(k):
        conn = http.client.HTTPConnection(LOOPBACK, p.port, timeout=10)
        while not stop.is_set():
            started = time.monotonic()
            conn.request("GET", "/id?k=" + k)
            resp = conn.getresponse()
            resp.read()
            took = time.monotonic() - started
            with lock:
                results[k][resp.status] = results[k].get(resp.status, 0) + 1
                if resp.status == 500:
                    failures.append((started, took))
            if results[k].get(503, 0) > 50:
                break
            time.sleep(0.002)  # about 300 requests per key take a few seconds: the failover lands mid-window
        conn.close()

    with concurrent.futures.ThreadPoolExecutor(len(keys)) as pool:
        futures = [pool.submit(load, k) for k in keys]
        wait_for(lambda: sum(v.get(200, 0) for v in results.values()) > n, timeout=20, message="load running")
        victim = c.master_nodes()[0]
        on_victim = {key.rsplit(":", 1)[1].rstrip("}") for key in victim.cli("KEYS", "portico:lc:*").split()}
        t0 = time.monotonic()
        c.fail_over_master(0)
        failover_s = time.monotonic() - t0
        for f in futures:
            f.result(timeout=120)
    after = {}
    for m in c.master_nodes():
        for key in m.cli("KEYS", "portico:lc:*").split():
            after[key.rsplit(":", 1)[1].rstrip("}")] = int(m.cli("GET", key))
    print("cluster failover %.2fs: %s; counts in Redis after it: %s; keys on the failed master: %s"
          % (failover_s, results, after, sorted(on_victim)))
    for k, v in results.items():
        assert set(v) <= {200, 500, 503}, (k, v)
        assert v.get(503, 0) > 50, (k, v)  # limited again after the failover
        if k not in on_victim:
            assert v == {200: n, 503: v[503]}, (k, v)  # the other masters' keys: exact, no error
            continue
        # The failed master's keys: a request that failed (500) may or may not have been counted, and the
        # writes the old master acknowledged but had not yet replicated are lost (Redis replication is
        # asynchronous): the new master's count restarts lower by that much.
        assert n - v.get(500, 0) <= v.get(200, 0) <= n + 20, (k, v)
    # Errors only while the master is down: each costs at most one redis_timeout (the first calls on the dead
    # connection), then the open breaker fails its slots at once, and they stop within a map refresh of the
    # failover (a replica promoted, the slot map read again).
    assert failures, "the keys of the failed master saw the outage"
    assert max(took for _, took in failures) <= 0.5 + 0.3, failures
    assert all(t0 - 0.1 <= started <= t0 + failover_s + 1.0 for started, _ in failures), \
        (t0, failover_s, [round(s - t0, 2) for s, _ in failures][-5:])


def test_batched_mode_stays_within_its_bound(origin, portico, redis):
    r = redis()
    o = origin("o")
    n, interval = 300, 0.2
    cfg = make_config([route("bt", "/id", o, plugins={"limit-count": count_conf(r, n, sync_interval=interval)})])
    p1, p2 = portico(cfg, name="a"), portico(cfg, name="b")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        per = list(pool.map(lambda p: blast(p.port, "/id", threads=3, seconds=3.0), [p1, p2]))
    seconds = time.monotonic() - t0
    counts = add(per[0], per[1])
    admitted = counts.get(200, 0)
    rate = max(sum(c.values()) for c in per) / seconds  # the faster instance's requests per second
    bound = n + 2 * rate * (interval + 0.05)
    print("batched: admitted %d of %d, bound %.0f (r=%.0f/s per instance)" % (admitted, n, bound, rate))
    assert set(counts) == {200, 503}, counts
    # No instance alone admits more than N either: the excess is at most min(D r (I + rtt), (D - 1) N).
    assert n <= admitted <= min(bound, 2 * n), (admitted, bound, counts)
    assert all(c.get(200, 0) <= n for c in per), per  # no instance alone above N
    # Redis holds the global count once both synced: the sync runs on a timer, so the last interval's
    # admissions reach Redis without any further request.
    key = r.cli("KEYS", "portico:lb:*").split()[0]
    wait_for(lambda: int(r.cli("GET", key)) == admitted, timeout=5, interval=0.05, message="deltas synced")

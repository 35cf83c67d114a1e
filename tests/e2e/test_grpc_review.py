"""Regressions from the gRPC upstream review (docs/grpc.md): misbehaving nodes must neither leak connections
nor turn into wrong statuses."""

import re
import socket
import subprocess
import threading

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings

from conftest import LOOPBACK, wait_for
from grpc_servers import SERVICE, GrpcServer


def listener():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((LOOPBACK, 0))
    srv.listen(64)
    return srv, srv.getsockname()[1]


def accept_each(srv, serve):
    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def established_to(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst", "%s:%d" % (LOOPBACK, port)],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def grpc_curl(gw, body_path, *extra, timeout=15):
    r = subprocess.run(["curl", "-s", "-i", "--http2-prior-knowledge", "-m", str(timeout), "-H",
                        "content-type: application/grpc", "-H", "te: trailers", *extra, "--data-binary",
                        "@%s" % body_path, "http://%s:%d/%s/Echo" % (LOOPBACK, gw.port, SERVICE)],
                       capture_output=True)
    lines = r.stdout.split(b"\r\n")
    status = next((l for l in lines if l.startswith(b"HTTP/")), b"")
    # curl prints the trailers right after the body bytes.
    found = re.findall(rb"grpc-status: *(\d+)", r.stdout, re.I)
    grpc_status = found[-1] if found else None
    return status.strip(), grpc_status, r.stdout


def test_a_node_that_stops_reading_leaves_no_connection(portico, tmp_path):
    # SETTINGS with a huge window, then never reads: Portico's writes fill the socket buffers and stall.
    srv, port = listener()
    held = []

    def serve(c):
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        conn.increment_flow_control_window(2**31 - 1 - 65535)
        c.sendall(conn.data_to_send())
        held.append(c)

    accept_each(srv, serve)
    up = {"scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 1}, "timeout": {"connect": 1, "send": 1, "read": 1},
          "keepalive_pool": {"size": 10, "idle_timeout": 1}}
    gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": up}]}, fmt="json")
    (tmp_path / "b").write_bytes(b"\0" * (8 << 20))
    try:
        for _ in range(3):
            grpc_curl(gw, tmp_path / "b", timeout=8)
        assert held
        wait_for(lambda: not established_to(port), timeout=10,
                 message="connections to a node that stopped reading were not closed")
    finally:
        srv.close()
        for c in held:
            c.close()


def raw_node(on_request, on_data=None, on_end=None):
    """An h2c node driven by callbacks; each gets (conn, stream_id, state dict) and may queue frames."""
    srv, port = listener()

    def serve(c):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                    validate_outbound_headers=False))
        conn.initiate_connection()
        c.sendall(conn.data_to_send())
        st = {"body": bytearray(), "held": 0}
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                for ev in conn.receive_data(d):
                    if isinstance(ev, h2.events.RequestReceived):
                        st["sid"] = ev.stream_id
                        on_request(conn, ev.stream_id, st)
                    elif isinstance(ev, h2.events.DataReceived):
                        st["body"] += ev.data
                        if on_data:
                            on_data(conn, ev, st)
                        else:
                            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and on_end:
                        on_end(conn, ev.stream_id, st)
                    elif isinstance(ev, h2.events.WindowUpdated) and "pump" in st:
                        st["pump"](conn)
                c.sendall(conn.data_to_send())
        except Exception:
            pass
        finally:
            c.close()

    accept_each(srv, serve)
    return srv, port


def scripted_node(respond):
    """An HTTP/2 node (h2c) answering each request with respond(conn, stream_id)."""
    return raw_node(lambda conn, sid, _st: respond(conn, sid))


def many_fields(count, where):
    def respond(conn, sid):
        extra = [("x-h%d" % i, "v") for i in range(count)]
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")] +
                          (extra if where == "head" else []))
        conn.send_data(sid, b"\x00\x00\x00\x00\x01A")
        conn.send_headers(sid, [("grpc-status", "0")] + (extra if where == "trailers" else []), end_stream=True)
    return respond


def call_status(gw, method="Echo"):
    with grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port)) as ch:
        try:
            ch.unary_unary("/%s/%s" % (SERVICE, method))(b"x", timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


def test_too_many_response_fields_are_unavailable_not_silence(portico, tmp_path):
    for where in ("head", "trailers"):
        srv, port = scripted_node(many_fields(200, where))
        try:
            gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": {
                "scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 1}}}]}, fmt="json")
            assert call_status(gw) == grpc.StatusCode.UNAVAILABLE, where
            if where == "head":
                (tmp_path / "b").write_bytes(b"x")
                status, grpc_status, _ = grpc_curl(gw, tmp_path / "b")
                assert (status, grpc_status) == (b"HTTP/2 200", b"14")
        finally:
            srv.close()


def test_a_huge_grpc_timeout_is_no_deadline(portico, tmp_path):
    node = GrpcServer(tmp_path)
    try:
        gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": {"scheme": "grpc", "nodes": {node.node: 1}}}]},
                     fmt="json")
        (tmp_path / "b").write_bytes(b"\x00\x00\x00\x00\x02hi")
        # 2562047H is grpc-java's "no deadline" (Long.MAX_VALUE nanoseconds).
        for t in ["5S", "99999999S", "99999999M", "99999999H", "2562047H"]:
            status, grpc_status, out = grpc_curl(gw, tmp_path / "b", "-H", "grpc-timeout: " + t)
            assert (status, grpc_status) == (b"HTTP/2 200", b"0") and b"\x02hi" in out, (t, out)
    finally:
        node.stop()


def test_a_route_read_timeout_is_unavailable_not_deadline_exceeded(portico):
    # The node answers nothing: the route's read timeout (1 s) passes, the call's own deadline (none) did not.
    srv, port = scripted_node(lambda conn, sid: None)
    try:
        gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": {
            "scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 1}, "timeout": {"connect": 1, "send": 1, "read": 1}}}]},
            fmt="json")
        assert call_status(gw) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port)) as ch:
            try:
                ch.unary_unary("/%s/Echo" % SERVICE)(b"x", timeout=0.5)
                raise AssertionError("no answer expected")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        srv.close()


def silent_node():
    """Accepts TCP connections and never says a word (no SETTINGS)."""
    srv, port = listener()
    held = []
    accept_each(srv, held.append)
    return srv, port, held


def test_a_node_that_never_sends_settings_is_a_connect_timeout(portico, tmp_path):
    srv, port, held = silent_node()
    good = GrpcServer(tmp_path)
    try:
        up = {"scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 100, good.node: 1}, "retries": 1,
              "timeout": {"connect": 1, "send": 5, "read": 5}}
        gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": up}]}, fmt="json")
        # The silent node first (weights): its connect times out after 1 s, the call goes to the good node.
        assert call_status(gw) == grpc.StatusCode.OK
        assert held
    finally:
        good.stop()
        srv.close()


def test_the_grpc_deadline_bounds_the_connect(portico, tmp_path):
    # connect timeout 60 s, grpc-timeout 1 s: the call ends at its deadline, DEADLINE_EXCEEDED from Portico.
    srv, port, held = silent_node()
    try:
        up = {"scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 1}, "timeout": {"connect": 60, "send": 60, "read": 60}}
        gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": up}]}, fmt="json")
        (tmp_path / "b").write_bytes(b"x")
        status, grpc_status, _ = grpc_curl(gw, tmp_path / "b", "-H", "grpc-timeout: 1S", timeout=10)
        assert (status, grpc_status) == (b"HTTP/2 200", b"4")
        # Without a grpc-timeout, a connect timeout of the route is UNAVAILABLE (the call's deadline did not pass).
        up["timeout"]["connect"] = 1
        gw2 = portico({"routes": [{"id": "d", "uri": "/*", "upstream": up}]}, fmt="json")
        assert grpc_curl(gw2, tmp_path / "b", timeout=10)[:2] == (b"HTTP/2 200", b"14")
    finally:
        srv.close()


def test_connections_per_node_are_capped(portico):
    # A node allowing one stream at a time that never answers: 40 concurrent calls must not open 40
    # connections (the pool's cap is 16; the calls above it fail UNAVAILABLE at once).
    srv, port = listener()
    held = []

    def serve(c):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        c.sendall(conn.data_to_send())
        held.append(c)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                conn.receive_data(d)
                c.sendall(conn.data_to_send())
        except Exception:
            pass

    accept_each(srv, serve)
    up = {"scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 1}, "timeout": {"connect": 2, "send": 5, "read": 5}}
    gw = portico({"routes": [{"id": "d", "uri": "/*", "upstream": up}]}, fmt="json")
    codes = []
    with grpc.insecure_channel("%s:%d" % (LOOPBACK, gw.port)) as ch:
        echo = ch.unary_unary("/%s/Echo" % SERVICE)
        futures = [echo.future(b"x", timeout=3) for _ in range(40)]
        for f in futures:
            try:
                f.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    try:
        assert len(held) <= 16, len(held)
        assert grpc.StatusCode.UNAVAILABLE in codes
    finally:
        srv.close()
        for c in held:
            c.close()


def test_the_node_gets_what_is_left_of_the_grpc_timeout(portico, tmp_path):
    # fault-injection holds the call 1 s in Portico before it goes upstream: a 10 s deadline leaves ~9 s, and
    # that is what the node must be told (its handler is not left running after the caller gave up).
    node = GrpcServer(tmp_path)
    try:
        gw = portico({"routes": [{"id": "t", "uri": "/*", "plugins": {"fault-injection": {"delay": {"duration": 1}}},
                                  "upstream": {"scheme": "grpc", "nodes": {node.node: 1}}}]}, fmt="json")
        with grpc.insecure_channel("127.0.0.1:%d" % gw.port) as ch:
            call = ch.unary_unary("/%s/Echo" % SERVICE)
            _, info = call.with_call(b"hi", timeout=10, metadata=(("x-show-timeout", "1"),))
            seen = dict(info.initial_metadata())["x-seen-timeout"]
            assert 8.0 < float(seen) < 9.2, seen
            _, info = call.with_call(b"hi", metadata=(("x-show-timeout", "1"),))  # no deadline: none is sent
            assert float(dict(info.initial_metadata())["x-seen-timeout"]) > 1e6  # grpcio's "no deadline"
    finally:
        node.stop()

"""Regressions from the grpc-web review (docs/grpc.md "gRPC-Web"): the two directions of a -text call keep apart,
`:ext` after a parameter segment, a trailers-only answer without a status, a bad body found after the node
answered, and Portico's own answers under a response-rewrite."""

import base64
import hashlib
import threading

from conftest import LOOPBACK, RawConn
from grpc_servers import SERVICE, GrpcServer
from test_grpc_review import listener, raw_node
from test_grpc_web import TEXT, BIN, frame, messages_and_status, unbase64


def web_gw(portico, port, uri="/w/*", plugins=None):
    up = {"scheme": "grpc", "nodes": {"%s:%d" % (LOOPBACK, port): 1}, "timeout": {"connect": 2, "send": 5, "read": 5}}
    route = {"id": "w", "uri": uri, "plugins": {"grpc-web": {}, **(plugins or {})}, "upstream": up}
    return portico({"routes": [route]}, fmt="json")


def test_text_bodies_stay_apart_when_the_node_withholds_its_window(portico):
    # The node answers at once with a large message and opens no window until it has sent all of it: the pump's
    # write to the node waits (holding its decoded piece) while the relay base64-encodes the response. Each
    # direction must keep its own bytes.
    response = bytes((i * 7 + 3) % 251 for i in range(200000))
    request = bytes((i * 13 + 1) % 253 for i in range(299995))  # 400000 bytes of base64 with its frame header
    out = frame(response)
    seen = {}

    def on_request(conn, sid, st):
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        st["sent"] = 0

        def pump(conn):
            while st["sent"] < len(out):
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(out) - st["sent"])
                if n <= 0:
                    return
                conn.send_data(sid, out[st["sent"]:st["sent"] + n])
                st["sent"] += n
            if not st.get("opened"):
                st["opened"] = True  # all sent: now take the request body
                if st["held"]:
                    conn.acknowledge_received_data(st["held"], sid)
            if st.get("ended") and not st.get("done"):
                st["done"] = True
                seen["body"] = bytes(st["body"])
                conn.send_headers(sid, [("grpc-status", "0"), ("x-sha", hashlib.sha256(st["body"]).hexdigest())],
                                  end_stream=True)
        st["pump"] = pump
        pump(conn)

    def on_data(conn, ev, st):
        if st.get("opened"):
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        else:
            st["held"] += ev.flow_controlled_length

    def on_end(conn, sid, st):
        st["ended"] = True
        st["pump"](conn)

    srv, port = raw_node(on_request, on_data, on_end)
    gw = web_gw(portico, port)
    body = base64.b64encode(frame(request))
    assert len(body) == 400000
    try:
        with RawConn(gw.port, timeout=20) as c:
            c.send("POST /w/%s/PingPong HTTP/1.1\r\nHost: h\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                   % (SERVICE, TEXT, len(body)))
            sender = threading.Thread(target=c.send, args=(body,), daemon=True)
            sender.start()
            r = c.read_response("POST")
            sender.join(10)
    finally:
        srv.close()
    assert r.status == 200, r
    msgs, status = messages_and_status(unbase64(r.body))
    assert seen.get("body") == frame(request), "the node received another request body"
    assert msgs == [response], "the client received another response body"
    assert status["grpc-status"] == "0" and status["x-sha"] == hashlib.sha256(frame(request)).hexdigest(), status


def test_ext_after_a_param_segment(portico, tmp_path):
    node = GrpcServer(tmp_path)
    try:
        gw = portico({"routes": [{"id": "g", "uri": "/g/:tenant/*", "plugins": {"grpc-web": {}},
                                  "upstream": {"scheme": "grpc", "nodes": {node.node: 1}}}]}, fmt="json")
        with RawConn(gw.port) as c:
            r = c.request("POST", "/g/acme-corp/%s/Echo" % SERVICE, body=frame(b"hi"),
                          headers=[("Content-Type", BIN), ("x-id", "param-route")])
        assert r.status == 200, r
        msgs, status = messages_and_status(r.body)
        assert msgs == [b"hi"] and status["grpc-status"] == "0", (msgs, status)
        assert "call Echo param-route" in node.events()
    finally:
        node.stop()


def test_trailers_only_without_a_status_gets_apisixs_status_2(portico):
    def on_request(conn, sid, st):
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")], end_stream=True)

    srv, port = raw_node(on_request)
    gw = web_gw(portico, port)
    try:
        with RawConn(gw.port) as c:
            r = c.request("POST", "/w/%s/Echo" % SERVICE, body=frame(b"x"), headers=[("Content-Type", BIN)])
    finally:
        srv.close()
    assert r.status == 200, r
    msgs, status = messages_and_status(r.body)
    assert msgs == [] and status == {"grpc-status": "2", "grpc-message": "upstream grpc status not received"}, status


def test_bad_text_body_after_the_node_answered_ends_with_status_13(portico):
    def on_request(conn, sid, st):
        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        conn.send_data(sid, frame(b"early"))

    srv, port = raw_node(on_request)
    gw = web_gw(portico, port)
    good = base64.b64encode(frame(b"abc"))
    bad = b"!!!!"
    answered = threading.Event()
    got = []
    try:
        with RawConn(gw.port, timeout=10) as c:
            c.send("POST /w/%s/Echo HTTP/1.1\r\nHost: h\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                   % (SERVICE, TEXT, len(good) + len(bad)))
            c.send(good)

            def sink(mv):
                got.append(bytes(mv))
                answered.set()  # the node's message reached the client: the call is under way

            def send_bad():
                if answered.wait(10):
                    c.send(bad)
            sender = threading.Thread(target=send_bad, daemon=True)
            sender.start()
            r = c.read_response("POST", sink=sink)
            sender.join(10)
    finally:
        srv.close()
    assert r.status == 200, r
    assert r.complete, "the response was cut"
    msgs, status = messages_and_status(unbase64(r.body))
    assert msgs == [b"early"], msgs
    assert status == {"grpc-status": "13", "grpc-message": "invalid base64 request body"}, status


def test_own_answer_keeps_its_shape_under_response_rewrite(portico):
    srv, port = listener()
    srv.close()  # nothing listens there: Portico answers UNAVAILABLE itself
    rewrite = {"response-rewrite": {"status_code": 418, "body": "rewritten"}}
    gw = web_gw(portico, port, plugins=rewrite)
    with RawConn(gw.port) as c:
        r = c.request("POST", "/w/%s/Echo" % SERVICE, body=frame(b"x"), headers=[("Content-Type", BIN)])
    assert r.status == 200, r
    assert r.header("grpc-status") == "14", r.headers
    assert r.header("content-type") == BIN and r.header("access-control-allow-origin") == "*", r.headers
    assert r.body == b"", r.body

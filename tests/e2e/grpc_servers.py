"""Real gRPC servers for the gRPC upstream tests (python3-grpcio from Debian, no code generation: generic
handlers on raw bytes). Each server runs in its own process, so one can die mid-stream like a crashed node.

Service "test.Echo":
  Echo      unary: answers the request bytes. Metadata "x-echo" comes back as initial metadata "x-echo"
            ("x-show-proto": the request's x-forwarded-proto comes back as "x-seen-proto"; "x-show-timeout":
            the time the call had left when it arrived, from the grpc-timeout it received, in seconds, comes
            back as "x-seen-timeout": grpcio reports ~9.2e18 without one);
            "x-trailer" comes back as trailing metadata "x-trailer"; "x-status" (a number) ends the call with
            that status code and details "asked for <n>".
  Stream    server streaming: the request is a count n (ASCII); answers n messages "msg-<i>" ("x-status": then
            ends the call with that status, in the trailers after the messages).
  Collect   client streaming: answers "<count>:<all messages joined with ,>".
  Slow      unary: sleeps the request's seconds (ASCII float) unless cancelled first; a cancellation is
            recorded as an event "cancelled Slow <x-id metadata>".
  Die       server streaming: sends "before-1", "before-2", then the process exits without closing its
            streams (os._exit after a short pause so the two messages leave the socket first).
  PingPong  bidirectional: answers each message "pong-<message>" as it arrives, before the next one is read.
            Metadata "x-stop-after" n: after n replies the node ends the call (status OK, trailing metadata
            "x-stopped" "<n>") without reading the rest of the request stream.
Events (one line each: "call <method> <x-id>", "cancelled Slow <x-id>") go to a file the test reads.

Usage in tests:
    srv = GrpcServer(tmp_path)                 # h2c with prior knowledge
    srv = GrpcServer(tmp_path, cert, key)      # TLS (ALPN h2), files from tls_certs.Ca
    srv.node, srv.port, srv.events(), srv.stop()
"""

import os
import socket
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

SERVICE = "test.Echo"
PY = "/usr/bin/python3"


class GrpcServer:
    def __init__(self, workdir, cert_file=None, key_file=None, port=0):
        self.workdir = Path(workdir)
        self.port = port or _free_port()
        self.node = "127.0.0.1:%d" % self.port
        self.events_file = self.workdir / ("grpc-events-%d.log" % self.port)
        self.events_file.write_text("")
        args = [PY, __file__, "--port", str(self.port), "--events", str(self.events_file)]
        if cert_file:
            args += ["--cert", str(cert_file), "--key", str(key_file)]
        self.log = open(self.workdir / ("grpc-server-%d.log" % self.port), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("gRPC server exited: see %s" % self.log.name)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gRPC server did not listen on %d" % self.port)
                time.sleep(0.05)

    def events(self):
        return [line for line in self.events_file.read_text().splitlines() if line]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- the server process ---

def _serve(port, events_path, cert, key):
    import threading
    import grpc

    lock = threading.Lock()

    def event(line):
        with lock:
            with open(events_path, "a") as f:
                f.write(line + "\n")

    def meta(context, name):
        for k, v in context.invocation_metadata():
            if k == name:
                return v
        return None

    def echo(request, context):
        event("call Echo %s" % meta(context, "x-id"))
        if meta(context, "x-echo") is not None:
            context.send_initial_metadata((("x-echo", meta(context, "x-echo")),))
        elif meta(context, "x-show-proto") is not None:  # what the gateway told the node of the client's scheme
            context.send_initial_metadata((("x-seen-proto", meta(context, "x-forwarded-proto") or ""),))
        elif meta(context, "x-show-timeout") is not None:
            left = context.time_remaining()
            context.send_initial_metadata((("x-seen-timeout", "%.3f" % left),))
        if meta(context, "x-trailer") is not None:
            context.set_trailing_metadata((("x-trailer", meta(context, "x-trailer")),))
        status = meta(context, "x-status")
        if status is not None:
            context.abort(grpc.StatusCode(_code(int(status))), "asked for %s" % status)
        return request

    def stream(request, context):
        event("call Stream %s" % meta(context, "x-id"))
        for i in range(int(request.decode() or "0")):
            yield b"msg-%d" % i
        status = meta(context, "x-status")
        if status is not None:  # an error after the messages: the status goes in the trailers
            context.abort(grpc.StatusCode(_code(int(status))), "asked for %s" % status)

    def collect(request_iterator, context):
        event("call Collect %s" % meta(context, "x-id"))
        parts = [m for m in request_iterator]
        return b"%d:%s" % (len(parts), b",".join(parts))

    def slow(request, context):
        ident = meta(context, "x-id")
        event("call Slow %s" % ident)
        done = threading.Event()

        def on_cancel():
            if not done.is_set():
                event("cancelled Slow %s" % ident)
                done.set()

        context.add_callback(on_cancel)
        if done.wait(float(request.decode() or "0")):
            return b""
        done.set()
        return b"slept"

    def die(request, context):
        event("call Die %s" % meta(context, "x-id"))
        yield b"before-1"
        yield b"before-2"
        time.sleep(0.3)  # let the two messages leave the socket; then vanish like a crashed node
        os._exit(3)

    def ping_pong(request_iterator, context):
        event("call PingPong %s" % meta(context, "x-id"))
        stop = meta(context, "x-stop-after")
        replies = 0
        for m in request_iterator:
            yield b"pong-" + m
            replies += 1
            if stop is not None and replies >= int(stop):
                context.set_trailing_metadata((("x-stopped", str(replies)),))
                return

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Die": grpc.unary_stream_rpc_method_handler(die),
        "PingPong": grpc.stream_stream_rpc_method_handler(ping_pong),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    address = "127.0.0.1:%d" % port
    if cert:
        creds = grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])
        server.add_secure_port(address, creds)
    else:
        server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


def _code(n):
    import grpc
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c.value
    return grpc.StatusCode.UNKNOWN.value


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    _serve(a.port, a.events, a.cert, a.key)


class MisbehavingNode:
    """An h2c node (python3-h2, in the test process) that never answers a call: for every request it either
    refuses the stream (mode "refuse": RST_STREAM REFUSED_STREAM), sends GOAWAY with last stream id 0 ("goaway":
    the request was not processed), or resets it after reading it ("reset": RST_STREAM INTERNAL_ERROR, the
    request may have been processed). `requests` counts the request heads it received."""

    def __init__(self, mode):
        import threading
        self.mode = mode
        self.requests = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.node = "127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        import h2.config
        import h2.connection
        import h2.errors
        import h2.events
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        c.initiate_connection()
        try:
            conn.sendall(c.data_to_send())
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        with self.lock:
                            self.requests += 1
                        if self.mode == "refuse":
                            c.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                        elif self.mode == "goaway":
                            c.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=0)
                        else:
                            c.reset_stream(ev.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                conn.sendall(c.data_to_send())
        except Exception:
            return
        finally:
            conn.close()

    def stop(self):
        self.sock.close()

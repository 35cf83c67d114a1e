"""A small HTTPS origin for the upstream TLS tests: python3's ssl over a threaded TCP server, run inside the test
process. It records, per accepted TLS connection, the SNI the client sent, whether the session was resumed and
the client certificate's CN (mTLS), and answers:
  GET .../close  200, then closes the connection (so the next request needs a new one)
  GET /health    200, or the status set with set_health()
  GET /ws        with Upgrade: websocket: 101, then echoes every byte back (a tunnel test, no framing)
  anything else  200 with body "hello <path>"; keep-alive."""

import socket
import ssl
import threading


class TlsOrigin:
    def __init__(self, cert_file, key_file, client_ca_file=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        if client_ca_file:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca_file)
        self.lock = threading.Lock()
        self.connections = []  # dicts: sni, reused, peer_cn, requests, paths (since reset())
        self.all_connections = []  # every connection ever accepted
        self.failed_handshakes = 0
        self.health_status = 200
        self._sni = threading.local()
        self.ctx.sni_callback = self._on_sni
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.node = "127.0.0.1:%d" % self.port
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _on_sni(self, sslobj, name, ctx):
        self._sni.name = name

    def set_health(self, status):
        self.health_status = status

    def reset(self):
        with self.lock:
            self.connections = []
            self.failed_handshakes = 0

    def carriers(self, prefix):
        """The connections (ever accepted) that carried a request whose path starts with `prefix`."""
        with self.lock:
            return [dict(c) for c in self.all_connections if any(p.startswith(prefix) for p in c["paths"])]

    def snapshot(self):
        with self.lock:
            return [dict(c) for c in self.connections]

    def stop(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(10)
        self._sni.name = None
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.failed_handshakes += 1
            raw.close()
            return
        peer = conn.getpeercert()
        cn = None
        if peer:
            for rdn in peer.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
        record = {"sni": self._sni.name, "reused": conn.session_reused, "peer_cn": cn, "requests": 0,
                  "paths": []}
        with self.lock:
            self.connections.append(record)
            self.all_connections.append(record)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                with self.lock:
                    record["requests"] += 1
                    record["paths"].append(path)
                if path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\n")
                    if buf:
                        conn.sendall(buf)
                    while True:
                        data = conn.recv(65536)
                        if not data:
                            return
                        conn.sendall(data)
                status = self.health_status if path == "/health" else 200
                body = ("hello %s" % path).encode()
                close = path.endswith("/close")
                conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s" % (
                    status, len(body), b"Connection: close\r\n" if close else b"", body))
                if close:
                    return
        except (ssl.SSLError, OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

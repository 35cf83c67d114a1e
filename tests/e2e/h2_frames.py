"""A small frame-level HTTP/2 client for tests (python3-h2 / hyperframe / hpack), reused by the attack corpus.

Two layers:
  * `H2Client`: a connection driven by h2's state machine (h2.connection.H2Connection), for well-formed traffic:
    `request()` sends a request and returns its stream id, `response(sid)` collects status, headers, body and
    how the stream ended, `events_until()` pumps events. Client-side header validation is off, so a test can
    send what h2 would normally refuse (upper-case names, connection-specific fields, bad pseudo-headers).
  * raw frames: `send_raw()` writes bytes as they are; `frame()` builds a frame header + payload by hand, and
    `headers_block()` HPACK-encodes a header list with the connection's own encoder, so malformed frames h2
    refuses to produce (CONTINUATION floods, DATA beyond content-length, ...) can still be sent in step with
    the connection's HPACK state. `read_frames()` parses what the server sends with hyperframe.

Every blocking read has a timeout; `closed` turns true when the server closes. Typical use:

    with H2Client(port) as c:
        sid = c.request("GET", "/echo", authority="test.local")
        r = c.response(sid)
        assert r.status == 200 and r.ended
"""

import socket
import ssl
import struct
import time

import h2.config
import h2.connection
from h2.connection import ConnectionState
import h2.events
import h2.settings
import hpack
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8

# Error codes.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x8, 0x9, 0xb


def frame(ftype, flags, stream_id, payload=b""):
    """One raw frame: 9-byte header + payload."""
    n = len(payload)
    return struct.pack(">BHBBI", (n >> 16) & 0xFF, n & 0xFFFF, ftype, flags, stream_id & 0x7FFFFFFF) + payload


class Response:
    def __init__(self):
        self.status = None
        self.headers = []       # [(name, value)] of the final response, str
        self.informational = []  # [[(name, value)]] 1xx heads
        self.body = bytearray()
        self.ended = False      # END_STREAM received
        self.reset = None       # RST_STREAM error code, when reset

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None


class H2Client:
    def __init__(self, port, host="127.0.0.1", tls=False, server_name=None, cafile=None, timeout=10.0,
                 window=None, settings=None, connect=True):
        self.port, self.host, self.timeout = port, host, timeout
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=False, normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.responses = {}
        self.closed = False
        self.goaway = None       # (error_code, last_stream_id) of a GOAWAY received
        self.goaways = []
        self.remote_settings = {}
        self.events = []
        self.tls, self.server_name, self.cafile = tls, server_name, cafile
        self.sock = None
        self._inbuf = b""
        self._window = window
        self._settings = settings or {}
        if connect:
            self.connect()

    # -- connection ------------------------------------------------------------------------------------------
    def connect(self):
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.cafile)
            ctx.set_alpn_protocols(["h2"])
            raw = ctx.wrap_socket(raw, server_hostname=self.server_name or self.host)
            assert raw.selected_alpn_protocol() == "h2", raw.selected_alpn_protocol()
        self.sock = raw
        settings = dict(self._settings)
        if self._window is not None:
            settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = self._window
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.flush()
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.send_raw(data)

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    # -- requests --------------------------------------------------------------------------------------------
    def request(self, method, path, authority="test.local", scheme="http", headers=(), body=None,
                end_stream=True, stream_id=None):
        """Sends HEADERS (+ DATA when body); returns the stream id. headers: [(name, value)] appended as is."""
        sid = stream_id or self.h2.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", scheme), (":path", path)]
        if authority is not None:
            hdrs.insert(2, (":authority", authority))
        hdrs += list(headers)
        self.responses[sid] = Response()
        self.h2.send_headers(sid, hdrs, end_stream=end_stream and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def send_body(self, sid, body, end_stream=True):
        """Sends body bytes on `sid`, waiting for window as needed (flow control)."""
        view = memoryview(body)
        while view:
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                self.events_until(lambda: self.h2.local_flow_control_window(sid) > 0 or self.closed
                                  or self.responses[sid].reset is not None)
                if self.closed or self.responses[sid].reset is not None:
                    return False
                continue
            n = min(window, len(view))
            self.h2.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        if end_stream:
            self.h2.end_stream(sid)
            self.flush()
        return True

    def reset_stream(self, sid, code=CANCEL):
        self.h2.reset_stream(sid, code)
        self.flush()

    def ping(self, data=b"12345678"):
        self.h2.ping(data)
        self.flush()

    def headers_block(self, headers):
        """HPACK-encodes `headers` with this connection's encoder (keeps the server's decoder in step)."""
        return self.h2.encoder.encode(headers)

    # -- receiving -------------------------------------------------------------------------------------------
    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return b""
        return data

    def pump(self, timeout=None):
        """Reads once and processes the events. Returns False on timeout or close."""
        data = self._read(self.timeout if timeout is None else timeout)
        if not data:
            return False
        # One frame at a time: h2 takes any GOAWAY as the end of the connection, while RFC 9113 6.8 lets the
        # streams up to its last stream id finish (and a shutdown notice ends nothing). The state machine is
        # put back to CLIENT_OPEN after each GOAWAY so those streams can still be read.
        self._inbuf += data
        while len(self._inbuf) >= 9:
            length = int.from_bytes(self._inbuf[:3], "big")
            if len(self._inbuf) < 9 + length:
                break
            one, self._inbuf = self._inbuf[:9 + length], self._inbuf[9 + length:]
            try:
                events = self.h2.receive_data(one)
            except Exception:  # noqa: BLE001 - the server sent something h2 rejects: treat as closed
                self.closed = True
                return False
            for e in events:
                self._event(e)
            if self.h2.state_machine.state == ConnectionState.CLOSED:
                self.h2.state_machine.state = ConnectionState.CLIENT_OPEN
        self.flush()
        return True

    def _event(self, e):
        self.events.append(e)
        r = self.responses.get(getattr(e, "stream_id", None))
        if isinstance(e, h2.events.ResponseReceived) and r:
            r.headers = [(n if isinstance(n, str) else n.decode(), v if isinstance(v, str) else v.decode())
                         for n, v in e.headers]
            r.status = int(dict(r.headers)[":status"])
        elif isinstance(e, h2.events.InformationalResponseReceived) and r:
            r.informational.append(list(e.headers))
        elif isinstance(e, h2.events.DataReceived):
            if r:
                r.body += e.data
            # Give the window back as the test reads, so large bodies flow.
            self.h2.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, h2.events.StreamEnded) and r:
            r.ended = True
        elif isinstance(e, h2.events.StreamReset) and r:
            r.reset = e.error_code
        elif isinstance(e, h2.events.ConnectionTerminated):
            self.goaway = (e.error_code, e.last_stream_id)
            self.goaways.append(self.goaway)
        elif isinstance(e, h2.events.RemoteSettingsChanged):
            for code, ch in e.changed_settings.items():
                self.remote_settings[code] = ch.new_value

    def events_until(self, predicate, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return predicate()
            self.pump(left)
        return True

    def response(self, sid, timeout=None):
        """Waits until stream `sid` ended or was reset (or the connection closed); returns its Response."""
        r = self.responses[sid]
        self.events_until(lambda: r.ended or r.reset is not None or self.closed, timeout)
        return r

    def wait_closed(self, timeout=None):
        return self.events_until(lambda: self.closed, timeout)

    def read_frames(self, timeout=2.0):
        """Raw mode: reads what arrives within `timeout` and parses it into hyperframe frames (no h2 state)."""
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self._read(max(0.01, deadline - time.monotonic()))
            if not data:
                break
            buf += data
        frames = []
        while len(buf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            f.parse_body(memoryview(buf[9:9 + length]))
            frames.append(f)
            buf = buf[9 + length:]
        return frames


def encode_headers(headers):
    """HPACK with a fresh encoder (for raw connections that never sent a header block before)."""
    return hpack.Encoder().encode(headers)

"""Strict request parsing: malformed or ambiguous requests are rejected by the gateway itself, with the right
status, a JSON error body and (for parse errors) Connection: close, and they never reach the origin.

Every case uses a unique marker path; the origin records every request head it parses (/admin/seen), so
"never reached the origin" is checked directly. For errors that are only detectable in the body (bad chunk
framing, chunked body over the limit) a streaming gateway may already have forwarded the head; there the
assertion is that the origin never received a complete request.
"""

import json
import uuid

import pytest

from conftest import RawConn, make_config, route

MAX_HEADER = 8192


@pytest.fixture(scope="module")
def env(origin_module, portico_module):
    o = origin_module("strict")
    cfg = make_config([
        route("limited", "/limited/*", o, plugins={"client-control": {"max_body_size": 100}}),
        route("all", "/*", o),
    ])
    p = portico_module(cfg, max_header_size=MAX_HEADER)
    return p, o


def H(extra=b""):
    return b"Host: a\r\n" + extra


# (case id, request bytes with {p} = marker path, accepted statuses, scope, connection must close)
CASES = [
    ("cl_te", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nGET {p}-smuggled HTTP/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("te_cl", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n"
              b"0\r\n\r\nGET {p}-smuggled HTTP/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("dup_cl", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
     {400}, "head", True),
    ("dup_cl_list", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", {400}, "head", True),
    ("bad_cl_alpha", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", {400}, "head", True),
    ("bad_cl_negative", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", {400}, "head", True),
    ("bad_cl_plus", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", {400}, "head", True),
    ("bad_cl_inner_space", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n0123456789",
     {400}, "head", True),
    ("bad_cl_hex", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", {400}, "head", True),
    ("bad_cl_overflow", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
     {400, 413}, "head", True),
    ("te_obf_vtab", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
     {400, 501}, "head", True),
    ("te_obf_xchunked", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
     {400, 501}, "head", True),
    ("te_obf_quoted", b'POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n',
     {400, 501}, "head", True),
    ("te_obf_twice", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                     b"\r\n\r\n0\r\n\r\n", {400, 501}, "head", True),
    ("te_chunked_not_last", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
     {400, 501}, "head", True),
    ("te_space_before_colon", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
     {400}, "head", True),
    # An unknown coding alone also means chunked is not the final coding: RFC 9112 6.3 makes that a MUST-400.
    ("te_unknown_only", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n", {400}, "head", True),
    # Unknown coding with chunked last: the framing is clear, the coding is not understood -> 501 (RFC 9112 6.1).
    ("te_unknown_then_chunked", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n",
     {501}, "head", True),
    ("space_before_colon", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-Foo : bar\r\n\r\n", {400}, "head", True),
    ("obs_fold", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-Foo: a\r\n  b\r\n\r\n", {400}, "head", True),
    ("bare_lf_everywhere", b"GET {p} HTTP/1.1\nHost: a\n\n", {400}, "head", True),
    ("bare_lf_one_header", b"GET {p} HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", {400}, "head", True),
    ("bare_cr_in_value", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", {400}, "head", True),
    ("bare_cr_line_end", b"GET {p} HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", {400}, "head", True),
    ("nul_in_value", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", {400}, "head", True),
    ("nul_in_target", b"GET {p}\x00x HTTP/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("ctl_in_value", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n", {400}, "head", True),
    ("bad_name_at", b"GET {p} HTTP/1.1\r\nHost: a\r\nX@A: b\r\n\r\n", {400}, "head", True),
    ("bad_name_space", b"GET {p} HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", {400}, "head", True),
    ("bad_name_empty", b"GET {p} HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", {400}, "head", True),
    ("bad_name_paren", b"GET {p} HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", {400}, "head", True),
    ("bad_name_non_ascii", b"GET {p} HTTP/1.1\r\nHost: a\r\nX\xe9: b\r\n\r\n", {400}, "head", True),
    ("no_colon", b"GET {p} HTTP/1.1\r\nHost: a\r\nJustAName\r\n\r\n", {400}, "head", True),
    ("missing_host", b"GET {p} HTTP/1.1\r\nX-A: b\r\n\r\n", {400}, "head", True),
    ("duplicate_host", b"GET {p} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}, "head", True),
    ("reqline_double_space", b"GET  {p} HTTP/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("reqline_no_version", b"GET {p}\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("reqline_extra_token", b"GET {p} HTTP/1.1 extra\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("reqline_bad_method", b"G(T {p} HTTP/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("reqline_target_no_slash", b"GET x{p} HTTP/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("reqline_lowercase_version", b"GET {p} http/1.1\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("reqline_garbage_version", b"GET {p} HTTP/1.x\r\nHost: a\r\n\r\n", {400}, "head", True),
    ("version_2_0", b"GET {p} HTTP/2.0\r\nHost: a\r\n\r\n", {505}, "head", True),
    ("version_3_0", b"GET {p} HTTP/3.0\r\nHost: a\r\n\r\n", {505}, "head", True),
    ("oversized_header", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * (2 * MAX_HEADER) + b"\r\n\r\n",
     {431}, "head", True),
    ("oversized_header_count", b"GET {p} HTTP/1.1\r\nHost: a\r\n"
                               + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(400)) + b"\r\n",
     {431}, "head", True),
    ("oversized_target", b"GET {p}?" + b"q" * (MAX_HEADER + 2000) + b" HTTP/1.1\r\nHost: a\r\n\r\n",
     {414}, "head", True),
    ("body_over_max_cl", b"POST /limited{p} HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n" + b"b" * 101,
     {413}, "head", False),
    ("bad_chunk_size", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
     {400}, "body", True),
    ("bad_chunk_negative", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n"
                           b"0\r\n\r\n", {400}, "body", True),
    ("bad_chunk_overflow", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n", {400, 413}, "body", True),
    ("bad_chunk_missing_crlf", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"5\r\nhelloXX0\r\n\r\n", {400}, "body", True),
    ("body_over_max_chunked", b"POST /limited{p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"4b\r\n" + b"c" * 75 + b"\r\n4b\r\n" + b"c" * 75 + b"\r\n0\r\n\r\n",
     {413}, "body", False),
]

# Well-formed requests of the same shapes: they must be forwarded (shows the method above can see requests).
VALID = [
    ("ok_get", b"GET {p} HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("ok_post_cl", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
    ("ok_chunked", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("ok_te_case_insensitive", b"POST {p} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
                               b"5\r\nhello\r\n0\r\n\r\n"),
    ("ok_ows_tabs", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A:\tb\t\r\n\r\n"),
    ("ok_obs_text", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9\r\n\r\n"),
    ("ok_body_at_max", b"POST /limited{p} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"b" * 100),
    ("ok_http10_no_host", b"GET {p} HTTP/1.0\r\n\r\n"),
    ("ok_big_header_under_limit", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * (MAX_HEADER - 500) + b"\r\n\r\n"),
]


def marker(case):
    return "/m/%s-%s" % (case, uuid.uuid4().hex[:10])


@pytest.mark.parametrize("case,raw,statuses,scope,must_close", CASES, ids=[c[0] for c in CASES])
def test_rejected(env, case, raw, statuses, scope, must_close):
    p, o = env
    m = marker(case)
    data = raw.replace(b"{p}", m.encode())
    with RawConn(p.port, timeout=5) as c:
        c.send(data)
        r = c.read_response()
        assert r.status in statuses, "%s: expected %s, got %r" % (case, sorted(statuses), r)
        body = json.loads(r.body)
        assert isinstance(body.get("error_msg"), str) and body["error_msg"], r.body
        if must_close:
            assert "close" in r.connection_tokens(), "%s: no Connection: close on a parse error: %r" % (case, r)
            assert c.wait_closed(3), "%s: gateway kept the connection open after a parse error" % case
    seen = o.seen(m)
    if scope == "head":
        assert seen == [], "%s: the origin received the rejected request: %r" % (case, seen)
    else:
        complete = [x for x in seen if x["complete"]]
        assert complete == [], "%s: the origin received a complete rejected request: %r" % (case, complete)


@pytest.mark.parametrize("case,raw", VALID, ids=[c[0] for c in VALID])
def test_valid_counterparts_are_forwarded(env, case, raw):
    p, o = env
    m = marker(case)
    with RawConn(p.port, timeout=5) as c:
        c.send(raw.replace(b"{p}", m.encode()))
        r = c.read_response()
    # The origin answers 404 for marker paths it has no endpoint for; what matters is that the gateway forwarded.
    assert r.status == 404 and r.header("X-Origin-Id") == "strict", r
    seen = o.seen(m)
    assert len(seen) == 1 and seen[0]["complete"], seen


def test_rejection_leaves_gateway_serving(env):
    p, o = env
    with RawConn(p.port) as c:
        r = c.request("GET", "/echo")
        assert r.status == 200 and r.json()["target"] == "/echo"


def test_oversized_target_within_head_limit_gets_414(origin, portico):
    """A target far longer than any sane target limit, in a head that fits the (default, 64 KiB) head limit."""
    o = origin("strict414")
    p = portico(make_config([route("all", "/*", o)]))
    m = marker("target_60k")
    with RawConn(p.port, timeout=5) as c:
        c.send(b"GET %s?%s HTTP/1.1\r\nHost: a\r\n\r\n" % (m.encode(), b"q" * 60000))
        r = c.read_response()
        assert r.status == 414, r
        assert json.loads(r.body).get("error_msg")
        assert "close" in r.connection_tokens()
    assert o.seen(m) == []

"""One Portico gateway behind one small API, whichever way its configuration arrives, so that a plugin test is
written once and run in all three modes (conftest's `gateway` / `gateway_module` fixtures, parametrized with
ids "file", "admin", "hybrid"):

  file    standalone role: a YAML file (conftest Portico) that the gateway polls; a change rewrites it.
  admin   traditional role: one process with the Admin API and the proxy over etcd (controlplane.py).
  hybrid  a control_plane process (Admin API, sync) and a data_plane process (dataplane.py) that follows it;
          the data plane's token and trusted key are set up as in test_hybrid_sync.py, and it is given the
          keyring the control plane generated (--data-encryption-keyring), so consumer secrets reach it.

    gw.mode                                   "file" | "admin" | "hybrid"
    gw.apply(doc)                             serve exactly `doc` = {"routes": [...], "upstreams": [...], ...}
    gw.put(kind, id, value) / gw.delete(kind, id)    one resource; returns the Admin API reply (file: None)
    gw.apply_expect_error(doc) -> GatewayError        `doc` must be refused; the previous config keeps serving
    gw.request(method, target, headers=(), body=None, host="test.local")   through the proxy: a Response
    gw.origin, gw.upstream(**kw), gw.origin_seen(contains=None)            the origin every route points at
    gw.admin(method, path, body=None)         the Admin API (admin and hybrid only), an AdminReply
    gw.status_port, gw.metrics(), gw.config_status()                       the proxy process's status listener
    gw.document()                             what the gateway serves, in apply()'s shape
    gw.get(target, **kw), gw.proxy (the serving process), gw.cp (admin/hybrid: the Admin API's process),
    gw.processes, gw.log_tail(); header_values(record, name) for origin_seen() records
    start_gateway(mode, workdir, etcd=None, **flags)    what the fixtures call; flags go to every process

Kinds, in dependency order: upstreams, ssls, services, plugin_configs, consumers, global_rules, routes.
Consumers are identified by `username`, everything else by `id`; every resource of a document must carry it.

Every change returns only once the proxy serves it, observed on the proxy process's /status/config, never by
sleeping:
  file    the file's content hash is /status/config's `hash` and `last_error` is empty (a refused file instead
          moves `last_failure`).
  admin   every Admin API answer carries X-Portico-Revision; the proxy's `config_revision` (the etcd revision
          of the config it has built and handed to its workers) reaches the highest one.
  hybrid  the same on the data plane, but a control plane publishes only when the content changes (a write
          that leaves it equal gives no new revision), so every change ends with a PUT of one extra
          unreferenced upstream, SYNC_MARKER, whose `desc` changes each time. Its revision is the one waited
          for. It is never deleted; document() leaves it out, GET /apisix/admin/upstreams shows it.
A new snapshot reaches each worker as a handler posted to its event loop before /status/config reports it, so
a connection made afterwards is accepted after that handler has run.

apply(doc) on the Admin API: PUTs, in dependency order, each resource whose value differs from what this
object last wrote, then DELETEs, in reverse order, every resource the Admin API lists that `doc` lacks (so
resources written with gw.admin() are cleaned up too). A refused PUT or DELETE fails the test
(AssertionError), like a refused file.

apply_expect_error(doc) returns a GatewayError and leaves the previous config serving in every mode:
  file    the file is refused as a whole; .errors are the (path, reason) pairs of /status/config's
          `last_error`, paths from the document's root ("routes[0].uri"); the last good file is written back.
  admin/hybrid  the writes stop at the first refused one; .errors are the 400 body's `errors`, paths relative
          to the refused resource ("uri"); .status and .body are the reply; the writes made before it are undone.
A document that is accepted fails the test (the previous one is applied again first). In every mode,
.resource is (kind, id) of the refused resource (file: from the first path's "kind[index]") and
.fields are the paths relative to it ("uri"), so one assertion holds in every mode:
    err = gw.apply_expect_error(doc); assert err.resource == ("routes", "r1") and "uri" in err.fields

origin_seen() lists the request heads (method, target, headers, ...) that the origin received since the last
apply(), put() or delete(): each of them resets the origin's log (origin.py /admin/reset).

Limits: gw.admin() does not wait for the proxy. The dependency order cannot express every change in one
apply() on the Admin API: a service that drops the upstream its routes rely on, while those routes get their
own, is refused (the service is written first); apply the routes' change first.
"""

import copy
import hashlib
import re
import secrets
import urllib.parse
import uuid
from pathlib import Path

from conftest import LOOPBACK, Metrics, OriginGroup, Portico, RawConn, free_port, upstream, wait_for

MODES = ("file", "admin", "hybrid")
ORDER = ("upstreams", "ssls", "services", "plugin_configs", "consumers", "global_rules", "routes")
SYNC_MARKER = "gateway-modes-sync"
TIMEOUT = 10.0

# Shared by every mode's processes: a quick file poll, no compaction of the (shared) etcd's history.
FILE_FLAGS = {"watch_interval": 0.05}
ETCD_FLAGS = {"etcd_compaction_interval": 0}


def id_field(kind):
    return "username" if kind == "consumers" else "id"


def resource_id(kind, value):
    rid = value.get(id_field(kind)) if isinstance(value, dict) else None
    if rid is None:
        raise ValueError("a %s entry without %s: %r" % (kind, id_field(kind), value))
    return str(rid)


def header_values(record, name):
    """The values of header `name` in an origin_seen() record (case-insensitive)."""
    return [v for k, v in record.get("headers", []) if k.lower() == name.lower()]


def normalize(doc):
    """{kind: [value, ...]} with deep copies, kinds in dependency order, unknown kinds refused."""
    unknown = set(doc) - set(ORDER)
    if unknown:
        raise ValueError("unknown resource kinds %s (known: %s)" % (sorted(unknown), ", ".join(ORDER)))
    out = {}
    for kind in ORDER:
        values = [copy.deepcopy(v) for v in doc.get(kind) or []]
        for v in values:
            resource_id(kind, v)
        if values or kind == "routes":
            out[kind] = values
    return out


def by_id(doc, kind):
    return {resource_id(kind, v): v for v in doc.get(kind, [])}


def with_change(doc, kind, rid, value):
    """A copy of `doc` with resource (kind, rid) replaced by `value` (None: removed); a new one goes last."""
    new = copy.deepcopy(doc)
    values = new.setdefault(kind, [])
    at = [i for i, v in enumerate(values) if resource_id(kind, v) == rid]
    if value is None:
        new[kind] = [v for i, v in enumerate(values) if i not in at]
    elif at:
        values[at[0]] = copy.deepcopy(value)
    else:
        values.append(copy.deepcopy(value))
    return normalize(new)


class GatewayError:
    """A refused configuration (see the module docstring for what each mode fills in)."""

    def __init__(self, mode, message, errors, resource=None, fields=(), status=None, body=None):
        self.mode = mode
        self.message = message
        self.errors = list(errors)  # [(path, reason)] as the mode reports them
        self.resource = resource    # (kind, id) or None
        self.fields = list(fields)  # paths relative to the resource
        self.status = status
        self.body = body

    @property
    def paths(self):
        return [p for p, _ in self.errors]

    def __repr__(self):
        return "<GatewayError %s %s %r: %s>" % (self.mode, self.resource, self.paths, self.message)


class Gateway:
    """What the three modes share; subclasses provide _try(doc), _put_one, _delete_one and stop()."""

    def __init__(self, mode, origin):
        self.mode = mode
        self.origin = origin
        self.proxy = None    # the process whose listener serves requests
        self._doc = normalize({})
        self.processes = []  # what stop() stops, in start order

    # -- configuration -------------------------------------------------------------------------------------
    def document(self):
        return copy.deepcopy(self._doc)

    def apply(self, doc):
        new = normalize(doc)
        err = self._try(new)
        if err is not None:
            raise AssertionError("%s mode refused the document: %r\ndocument: %r" % (self.mode, err, new))
        self._doc = new
        self.origin.reset()

    def apply_expect_error(self, doc):
        new = normalize(doc)
        old = self._doc
        err = self._try(new)
        if err is None:
            self._doc = new
            self.apply(old)
            raise AssertionError("%s mode accepted a document expected to be refused: %r" % (self.mode, new))
        return err

    def put(self, kind, rid, value):
        value = dict(value)
        value.setdefault(id_field(kind), rid)
        assert str(value[id_field(kind)]) == str(rid), "id %r differs from the value's %r" % (rid, value)
        reply = self._put_one(kind, str(rid), value)
        self._doc = with_change(self._doc, kind, str(rid), value)
        self.origin.reset()
        return reply

    def delete(self, kind, rid):
        reply = self._delete_one(kind, str(rid))
        self._doc = with_change(self._doc, kind, str(rid), None)
        self.origin.reset()
        return reply

    def admin(self, method, path, body=None, **kw):
        raise AssertionError("the %s mode has no Admin API" % self.mode)

    # -- traffic -------------------------------------------------------------------------------------------
    def upstream(self, **kw):
        return upstream(self.origin, **kw)

    def origin_seen(self, contains=None):
        return self.origin.seen(contains)

    def request(self, method, target, headers=(), body=None, host="test.local", timeout=10.0, **kw):
        with RawConn(self.proxy.port, timeout=timeout) as c:
            return c.request(method, target, host=host, headers=headers, body=body, **kw)

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    # -- status --------------------------------------------------------------------------------------------
    @property
    def status_port(self):
        return self.proxy.status_port

    def metrics(self):
        st, body = self.proxy.status_get("/metrics")
        assert st == 200, "%s /metrics -> %s" % (self.proxy.name, st)
        return Metrics(body.decode())

    def config_status(self):
        return self.proxy.config_status()

    def log_tail(self, n=40):
        return "\n".join("--- %s ---\n%s" % (p.name, p.log_tail(n)) for p in self.processes)

    def stop(self):
        for p in reversed(self.processes):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
        self.origin.stop()


# ----------------------------------------------------------------------------------------------------------------
# file: the standalone role
# ----------------------------------------------------------------------------------------------------------------

class FileGateway(Gateway):
    def __init__(self, workdir, origin, **flags):
        super().__init__("file", origin)
        self.proxy = Portico(Path(workdir) / "standalone", self._doc, name="standalone",
                             **dict(FILE_FLAGS, **flags))
        self.processes.append(self.proxy)
        self.proxy.start()

    def _try(self, new):
        before = self.proxy.config_status()
        data = self.proxy.write_config(new)
        want = hashlib.sha256(data).hexdigest()

        def outcome():
            st = self.proxy.config_status()
            if st["last_failure"] != before["last_failure"] and st["last_error"]:
                return ("refused", st)
            if st["hash"] == want and not st["last_error"]:
                return ("served", st)
            return None
        verdict, st = wait_for(outcome, timeout=TIMEOUT, message=lambda: "the file (sha256 %s) to be served "
                               "or refused: %r\n%s" % (want, self.proxy.config_status(), self.log_tail()))
        if verdict == "served":
            return None
        assert st["hash"] == before["hash"], "a refused file changed what serves: %r -> %r" % (before, st)
        err = self._error(st["last_error"], new)
        # Write the last good file back: the refusal is cleared once it is read again.
        good = self.proxy.write_config(self._doc)
        assert hashlib.sha256(good).hexdigest() == st["hash"], "the last good file does not hash as it served"
        wait_for(lambda: not self.proxy.config_status()["last_error"], timeout=TIMEOUT,
                 message=lambda: "the restored file to clear last_error: %r" % self.proxy.config_status())
        return err

    def _error(self, text, doc):
        """A GatewayError from /status/config's last_error, "FILE: path: reason; FILE: path: reason"."""
        prefix = str(self.proxy.config_path) + ": "
        entries = text[len(prefix):].split("; " + prefix) if text.startswith(prefix) else [text]
        errors = []
        for e in entries:
            path, sep, reason = e.partition(": ")
            errors.append((path, reason) if sep and " " not in path else ("", e))
        resource, fields = None, []
        for path, _ in errors:
            m = re.match(r"^([a-z_]+)\[(\d+)\](?:\.(.*))?$", path)
            if not m or m.group(1) not in doc or int(m.group(2)) >= len(doc[m.group(1)]):
                continue
            where = (m.group(1), resource_id(m.group(1), doc[m.group(1)][int(m.group(2))]))
            if resource is None:
                resource = where
            if where == resource:
                fields.append(m.group(3) or "")
        return GatewayError("file", text, errors, resource, fields)

    def _change(self, kind, rid, value):
        new = with_change(self._doc, kind, rid, value)
        err = self._try(new)
        assert err is None, "the file mode refused the change of %s/%s: %r" % (kind, rid, err)

    def _put_one(self, kind, rid, value):
        self._change(kind, rid, value)

    def _delete_one(self, kind, rid):
        self._change(kind, rid, None)


# ----------------------------------------------------------------------------------------------------------------
# admin and hybrid: the Admin API over etcd
# ----------------------------------------------------------------------------------------------------------------

class AdminGateway(Gateway):
    """`cp` takes the Admin API writes; `proxy` serves (the same process in the admin mode)."""

    def __init__(self, mode, origin, cp, proxy, processes):
        super().__init__(mode, origin)
        self.cp = cp
        self.proxy = proxy
        self.processes = list(processes)
        self._written = {k: {} for k in ORDER}  # what this object last wrote, to skip unchanged PUTs
        self._marks = 0

    def admin(self, method, path, body=None, **kw):
        """The control plane's Admin API. A write forgets what this object wrote there, so that the next
        apply() writes that resource again."""
        if method not in ("GET", "HEAD"):
            rel = path.split("?")[0]
            rel = rel[len("/apisix/admin"):] if rel.startswith("/apisix/admin/") else rel
            parts = rel.strip("/").split("/")
            if parts[0] in self._written:
                if len(parts) >= 2:
                    self._written[parts[0]].pop(urllib.parse.unquote(parts[1]), None)
                else:  # PUT /<kind> with the id in the body, or POST: forget the whole kind
                    self._written[parts[0]].clear()
        return self.cp.admin(method, path, body, **kw)

    def _path(self, kind, rid):
        return "/%s/%s" % (kind, urllib.parse.quote(rid, safe=""))

    def _listed(self, kind):
        r = self.cp.admin("GET", "/" + kind)
        assert r.status == 200, "GET /apisix/admin/%s: %r" % (kind, r)
        ids = [resource_id(kind, it["value"]) for it in r.body.get("list") or []]
        return [i for i in ids if not (kind == "upstreams" and i == SYNC_MARKER)]

    def _write(self, method, kind, rid, value=None):
        """One Admin API write: (revision, None) when it succeeds, (None, GatewayError) when it is refused."""
        r = self.cp.admin(method, self._path(kind, rid), value)
        if 200 <= r.status < 300:
            if method == "PUT":
                self._written[kind][rid] = copy.deepcopy(value)
            else:
                self._written[kind].pop(rid, None)
            return int(r.headers["x-portico-revision"]), r
        body = r.body if isinstance(r.body, dict) else {}
        errors = [(e.get("path", ""), e.get("reason", "")) for e in body.get("errors") or []
                  if isinstance(e, dict)]
        message = body.get("error_msg") or body.get("message") or repr(r.raw)
        return None, GatewayError(self.mode, message, errors, (kind, rid), [p for p, _ in errors],
                                  status=r.status, body=r.body)

    def _try(self, new):
        revision = 0
        old = self._doc
        for kind in ORDER:
            for rid, value in by_id(new, kind).items():
                if self._written[kind].get(rid) == value:
                    continue
                rev, err = self._write("PUT", kind, rid, value)
                if rev is None:
                    return self._undo(old, err)
                revision = max(revision, rev)
        for kind in reversed(ORDER):
            keep = by_id(new, kind)
            for rid in self._listed(kind):
                if rid not in keep:
                    rev, err = self._write("DELETE", kind, rid)
                    if rev is None:
                        return self._undo(old, err)
                    revision = max(revision, rev)
        if revision:
            self._sync(revision)
        return None

    def _undo(self, old, err):
        again = self._try(old)
        assert again is None, "undoing a refused write failed: %r (after %r)" % (again, err)
        return err

    def _put_one(self, kind, rid, value):
        rev, reply = self._write("PUT", kind, rid, value)
        assert rev is not None, "PUT %s/%s refused: %r" % (kind, rid, reply)
        self._sync(rev)
        return reply

    def _delete_one(self, kind, rid):
        rev, reply = self._write("DELETE", kind, rid)
        assert rev is not None, "DELETE %s/%s refused: %r" % (kind, rid, reply)
        self._sync(rev)
        return reply

    def _sync(self, revision):
        if self.mode == "hybrid":
            self._marks += 1
            r = self.cp.admin("PUT", "/upstreams/" + SYNC_MARKER,
                              upstream(self.origin, desc="gateway_modes sync %d" % self._marks))
            assert r.status in (200, 201), "PUT the sync marker: %r" % (r,)
            revision = max(revision, int(r.headers["x-portico-revision"]))
        wait_for(lambda: self.proxy.config_status()["config_revision"] >= revision, timeout=TIMEOUT,
                 message=lambda: "%s to serve revision %d: %r\n%s" % (self.proxy.name, revision,
                                                                       self.proxy.config_status(), self.log_tail()))


# ----------------------------------------------------------------------------------------------------------------
# Starting one
# ----------------------------------------------------------------------------------------------------------------

def start_gateway(mode, workdir, etcd=None, **flags):
    """A started gateway of `mode` with its own origin ("gw") under `workdir`. `etcd` (an EtcdCluster) is
    needed by the admin and hybrid modes; each gateway takes its own --etcd-prefix, so one cluster can serve
    many. `flags` go to every portico process of the mode. Call stop() when done."""
    from controlplane import ControlPlane
    from dataplane import DataPlane

    assert mode in MODES, mode
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    origin = OriginGroup(workdir, ["gw"]).start().origins["gw"]
    if mode == "file":
        try:
            return FileGateway(workdir, origin, **flags)
        except BaseException:
            origin.stop()
            raise
    assert etcd is not None, "the %s mode needs an etcd cluster" % mode
    prefix = "/gw-%s-%s" % (mode, uuid.uuid4().hex[:8])
    procs = []
    try:
        if mode == "admin":
            tr = ControlPlane(workdir / "traditional", etcd.endpoints_arg(), role="traditional",
                              name="traditional", etcd_prefix=prefix, **dict(ETCD_FLAGS, **flags))
            procs.append(tr)
            tr.start()
            return AdminGateway(mode, origin, tr, tr, procs)
        token = secrets.token_hex(12)
        tokens = workdir / "dp-tokens"
        tokens.write_text("# node-id token\ndp1 %s\n" % token)
        tokens.chmod(0o600)
        sync = "%s:%d" % (LOOPBACK, free_port())
        cp = ControlPlane(workdir / "control_plane", etcd.endpoints_arg(), name="control_plane",
                          etcd_prefix=prefix, sync_listen=sync, dp_tokens_file=str(tokens),
                          **dict(ETCD_FLAGS, **flags))
        procs.append(cp)
        cp.start()
        # The control plane encrypts consumer secrets with the keyring it generated: the data plane needs it.
        dp_flags = dict(flags)
        dp_flags.setdefault("data_encryption_keyring", str(cp.state_dir / "keyring"))
        dp = DataPlane(workdir / "data_plane", ["http://" + sync], cp.state_dir / "signing.pub", token, "dp1",
                       name="data_plane", **dp_flags)
        procs.append(dp)
        dp.start()
        return AdminGateway(mode, origin, cp, dp, procs)
    except BaseException:
        for p in reversed(procs):
            p.stop()
        origin.stop()
        raise

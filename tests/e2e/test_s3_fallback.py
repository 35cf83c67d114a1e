"""The S3 fallback (docs/sync-protocol.md, "S3 fallback"), end to end.

The module shares one single-member etcd, one origin, a real S3-compatible server (s3rver from the repo's
node_modules, wrapped by tests/tools/s3rver-sigv4.js so that SigV4 signatures are checked) and control plane cp1,
which exports every published config to the bucket (--s3-keep 3, --s3-lease-ttl 3). Tests add what they need:
data planes whose control planes are all down (a bound port that refuses connections) and an empty cache, a
second control plane, tampered objects.

Objects are inspected in s3rver's directory (BUCKET/portico/snapshot-<revision>.psnap._S3rver_object), which is
where the server keeps what it was sent.
"""

import hashlib
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LOOPBACK, ROOT, free_port, http_request, reserve_dead_port, wait_for

BUCKET = "portico-e2e"
PREFIX = "portico/"
KEEP = 3
LEASE_TTL = 3
DEBOUNCE = 1.0
ORIGIN_ID = "s3o"
OBJECT_RE = re.compile(r"^snapshot-(\d{20})\.psnap\._S3rver_object$")
SERVER_JS = ROOT / "tests" / "tools" / "s3rver-sigv4.js"
RESULTS = {}


class S3Server:
    """tests/tools/s3rver-sigv4.js on a free loopback port, with its own directory."""

    def __init__(self, workdir, credentials_file):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dir = self.workdir / "data"
        self.log_path = self.workdir / "s3rver.log"
        self.credentials_file = credentials_file
        self.port = None
        self.proc = None

    def start(self, timeout=20.0):
        s3rver = ROOT / "node_modules" / ".bin" / "s3rver"
        assert s3rver.exists(), "%s is missing: run scripts/install-deps.sh (it runs npm ci)" % s3rver
        self.port = free_port()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                ["node", str(SERVER_JS), "--port", str(self.port), "--directory", str(self.dir), "--bucket", BUCKET,
                 "--credentials-file", str(self.credentials_file)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is None and "listening on" in self.log_path.read_text(), timeout,
                 message=lambda: "s3rver to start (exit %s): %s" % (self.proc.poll(), self.log_path.read_text()))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def endpoint(self):
        return "http://%s:%d" % (LOOPBACK, self.port)

    def object_path(self, revision, prefix=PREFIX):
        return self.dir / BUCKET / prefix / ("snapshot-%020d.psnap._S3rver_object" % revision)

    def revisions(self, prefix=PREFIX):
        """Revisions of the snapshot objects under `prefix`, oldest first."""
        try:
            names = os.listdir(self.dir / BUCKET / prefix)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(OBJECT_RE.match, names) if m)


class Env:
    def __init__(self, etcd, s3, cp1, origin, token, tokens_file, credentials_file):
        self.etcd = etcd
        self.s3 = s3
        self.cp1 = cp1
        self.origin = origin
        self.token = token
        self.tokens_file = tokens_file
        self.credentials_file = credentials_file
        self.pub = None  # cp1's signing.pub, what the data planes trust
        self.seq = 0

    def s3_flags(self, **extra):
        flags = {"s3_endpoint": self.s3.endpoint, "s3_bucket": BUCKET, "s3_credentials_file": str(self.credentials_file)}
        flags.update(extra)
        return flags

    def cp_flags(self, sync_port, **extra):
        return self.s3_flags(sync_listen="%s:%d" % (LOOPBACK, sync_port), dp_tokens_file=str(self.tokens_file),
                             s3_keep=KEEP, s3_lease_ttl=LEASE_TTL, **extra)

    def change(self, cp=None):
        """PUT a new route through `cp` (default cp1); returns (host, the revision it publishes)."""
        cp = cp or self.cp1
        self.seq += 1
        host = "r%d.s3.test" % self.seq
        before = cp.config_status()["published_revision"]
        r = cp.admin("PUT", "/routes/s3-%d" % self.seq, {"uri": "/id", "hosts": [host], "upstream": {
            "type": "roundrobin", "nodes": {self.origin.node: 1}}})
        assert r.status in (200, 201), "PUT route via %s: %r" % (cp.name, r)
        rev = wait_for(lambda: (lambda p: p if p > before else None)(cp.config_status()["published_revision"]),
                       10, message="%s to publish the change" % cp.name)
        return host, rev

    def export_state(self, cp=None):
        return (cp or self.cp1).config_status()["s3_export"]

    def wait_exported(self, rev, cp=None, timeout=10.0):
        cp = cp or self.cp1
        wait_for(lambda: self.export_state(cp)["exported_revision"] == rev and rev in self.s3.revisions(), timeout,
                 message=lambda: "%s to export revision %d (export state %r, bucket %r)"
                 % (cp.name, rev, self.export_state(cp), self.s3.revisions()))

    def put_object(self, key, data):
        """Uploads `data` as `key` with the curl CLI (SigV4; the credentials go through a config file)."""
        cfg = self.s3.workdir / "curl.cfg"
        access, secret = self.credentials_file.read_text().splitlines()[:2]
        cfg.write_text('user = "%s:%s"\n' % (access, secret))
        cfg.chmod(0o600)
        subprocess.run(["curl", "-sS", "-f", "-K", str(cfg), "--aws-sigv4", "aws:amz:us-east-1:s3", "-X", "PUT",
                        "-H", "x-amz-content-sha256: " + hashlib.sha256(data).hexdigest(), "--data-binary", "@-",
                        "%s/%s/%s" % (self.s3.endpoint, BUCKET, key)], input=data, check=True, timeout=10)

    def dead_cp(self):
        port, sock = reserve_dead_port()
        self._dead = getattr(self, "_dead", []) + [sock]
        return "http://%s:%d" % (LOOPBACK, port)


@pytest.fixture(scope="module")
def env(etcd_module, controlplane_module, origin_module, tmp_path_factory):
    work = tmp_path_factory.mktemp("s3")
    credentials = work / "s3.credentials"
    credentials.write_text("portico-e2e\n%s\n" % secrets.token_hex(16))
    credentials.chmod(0o600)
    s3 = S3Server(work / "s3", credentials)
    try:
        s3.start()
        e = etcd_module(size=1, name="etcd-s3")
        o = origin_module(ORIGIN_ID)
        token = secrets.token_hex(12)
        tokens_file = work / "dp-tokens"
        tokens_file.write_text("".join("dp-s3-%d %s%d\n" % (i, token, i) for i in range(4)))
        tokens_file.chmod(0o600)
        env = Env(e, s3, None, o, token, tokens_file, credentials)
        env.cp1 = controlplane_module(e.endpoints_arg(), name="cp1", **env.cp_flags(free_port()))
        env.pub = env.cp1.state_dir / "signing.pub"
        wait_for(lambda: env.export_state()["leader"], 10, message="cp1 to lead S3 exports")
        yield env
    finally:
        s3.stop()
        for sock in getattr(locals().get("env"), "_dead", []):
            sock.close()
    if RESULTS:
        print("\n=== S3 fallback results ===")
        for k, v in RESULTS.items():
            print("%s: %s" % (k, v))


def secret_never_logged(env, *procs):
    secret = env.credentials_file.read_text().splitlines()[1]
    for p in procs:
        assert secret not in p.error_log(), "%s logged the S3 secret key" % p.name
        assert secret not in " ".join(p.argv()), "the S3 secret key is on %s's command line" % p.name


def test_each_publish_is_exported_after_the_debounce(env):
    latencies = []
    for _ in range(3):
        t0 = time.monotonic()
        _, rev = env.change()
        env.wait_exported(rev)
        latencies.append(time.monotonic() - t0)
    RESULTS["export latency (admin PUT -> object in the bucket), s"] = ["%.2f" % x for x in latencies]
    assert max(latencies) < DEBOUNCE + 2.0, latencies
    # The object is exactly the snapshot the control plane serves to data planes.
    st, _, body = http_request(int(env.cp1.flags["sync_listen"].rsplit(":", 1)[1]), path="/portico/v1/snapshot",
                               headers={"Authorization": "Bearer %s0" % env.token})
    assert st == 200
    assert env.s3.object_path(rev).read_bytes() == body
    # A burst of changes is exported once, after the last one.
    exports = env.export_state()["exports"]
    for _ in range(3):
        _, rev = env.change()
    env.wait_exported(rev)
    assert env.export_state()["exports"] == exports + 1, env.export_state()
    secret_never_logged(env, env.cp1)


def test_retention_keeps_the_newest_n(env):
    exported = []
    while len(exported) < KEEP + 2:
        _, rev = env.change()
        env.wait_exported(rev)
        exported.append(rev)
    # Retention runs right after the upload.
    wait_for(lambda: env.s3.revisions() == exported[-KEEP:], 5,
             message=lambda: "the bucket to hold %r (it holds %r)" % (exported[-KEEP:], env.s3.revisions()))


def test_objects_of_an_earlier_etcd_cluster_are_deleted(env):
    newest = env.s3.revisions()[-1]
    data = env.s3.object_path(newest).read_bytes()
    cluster = re.search(rb"\ncluster_id: (\d+)\n", data).group(1)
    other = (b"2" if cluster[:1] == b"1" else b"1") + cluster[1:]
    stale = 10 ** 12  # revisions restart with a new etcd cluster, so the old cluster's are higher
    env.put_object("%ssnapshot-%020d.psnap" % (PREFIX, stale),
                   data.replace(b"cluster_id: " + cluster, b"cluster_id: " + other, 1))
    assert stale in env.s3.revisions()
    _, rev = env.change()
    env.wait_exported(rev)
    wait_for(lambda: stale not in env.s3.revisions(), 5, message="the other cluster's object to be deleted")
    assert "comes from another etcd cluster" in env.cp1.error_log()


def test_dp_with_no_cache_and_no_cp_starts_from_s3(env, dataplane, controlplane):
    host, rev = env.change()
    env.wait_exported(rev)
    late_port = free_port()  # a second control plane starts there later
    dp = dataplane([env.dead_cp(), "http://%s:%d" % (LOOPBACK, late_port)], env.pub, env.token + "1", "dp-s3-1",
                   **env.s3_flags())
    st = wait_for(lambda: (lambda st: st if st["sync_source"] != "none" else None)(dp.config_status()), 5)
    assert st["sync_source"] == "s3" and st["sync_revision"] == rev, st
    assert dp.served(host) == (200, ORIGIN_ID)
    assert "from S3 object %ssnapshot-%020d.psnap" % (PREFIX, rev) in dp.error_log()
    secret_never_logged(env, dp)

    # S3 is not polled: a newer config reaches the data plane only from a control plane, and replaces S3's.
    host2, rev2 = env.change()
    env.wait_exported(rev2)
    time.sleep(0.5)
    assert dp.config_status()["sync_revision"] == rev
    controlplane(env.etcd.endpoints_arg(), name="cp-late", signing_key_file=str(env.cp1.state_dir / "signing.key"),
                 **env.cp_flags(late_port))
    wait_for(lambda: dp.config_status()["sync_source"] == "control_plane", 15,
             message=lambda: "the data plane to switch to the control plane: %r" % dp.try_config_status())
    assert dp.config_status()["sync_revision"] >= rev2
    assert dp.served(host2) == (200, ORIGIN_ID)


def test_tampered_newest_object_is_skipped(env, dataplane):
    _, rev = env.change()
    env.wait_exported(rev)
    revs = env.s3.revisions()
    newest, previous = revs[-1], revs[-2]
    path = env.s3.object_path(newest)
    original = path.read_bytes()
    tampered = original.replace(b'"uri":"/id"', b'"uri":"/ID"', 1)
    assert tampered != original and len(tampered) == len(original)
    path.write_bytes(tampered)
    try:
        dp = dataplane([env.dead_cp()], env.pub, env.token + "2", "dp-s3-2", **env.s3_flags())
        st = wait_for(lambda: (lambda st: st if st["sync_source"] != "none" else None)(dp.config_status()), 5)
        assert st["sync_source"] == "s3" and st["sync_revision"] == previous, st
        assert ("S3 object %ssnapshot-%020d.psnap skipped: content does not match its hash" % (PREFIX, newest)
                in dp.error_log()), dp.log_tail()
    finally:
        path.write_bytes(original)


def test_nothing_valid_anywhere_stays_unready(env, dataplane):
    dp = dataplane([env.dead_cp()], env.pub, env.token + "3", "dp-s3-3", wait_ready=False,
                   **env.s3_flags(s3_prefix="empty/"))
    wait_for(lambda: "S3 fallback: no snapshot under" in dp.error_log(), 10, message=dp.log_tail)
    assert dp.status_get("/readyz")[0] == 503
    r = dp.get("/id", host="anything.test")
    assert r.status == 503 and r.body, r
    assert dp.config_status()["sync_source"] == "none"


def test_one_exporter_and_takeover_when_the_leader_dies(env, controlplane):
    cp2 = controlplane(env.etcd.endpoints_arg(), name="cp2", signing_key_file=str(env.cp1.state_dir / "signing.key"),
                       **env.cp_flags(free_port()))
    wait_for(lambda: "s3 export: not the leader" in cp2.error_log(), 10, message=cp2.log_tail)
    assert not env.export_state(cp2)["leader"]
    _, rev = env.change(cp2)
    env.wait_exported(rev)
    time.sleep(DEBOUNCE + 0.5)
    assert env.export_state(cp2)["exports"] == 0, env.export_state(cp2)
    assert env.etcd.get("/apisix-leader/s3-export") is not None

    env.cp1.proc.kill()  # no step-down: cp2 takes over when the lease runs out
    env.cp1.proc.wait(10)
    try:
        t0 = time.monotonic()
        _, rev = env.change(cp2)
        env.wait_exported(rev, cp=cp2, timeout=LEASE_TTL + DEBOUNCE + 10)
        took = time.monotonic() - t0
        RESULTS["takeover (leader SIGKILLed -> next revision exported by the other), s"] = "%.2f" % took
        assert took < LEASE_TTL + DEBOUNCE + 3, took
        assert "s3 export: this control plane is the leader" in cp2.error_log()
        # Stopping steps down at once: the election key goes with the revoked lease.
        cp2.stop()
        assert not env.etcd.get("/apisix-leader/s3-export"), "the election key outlived a graceful stop"
        assert "s3 export: stepped down" in cp2.error_log()
    finally:
        env.cp1.spawn()
        env.cp1.wait_up(ready=True, timeout=20)

"""The Admin API's plugin endpoints, APISIX 3.x credentials, and consumer secrets encrypted at rest end to end
(docs/admin-api.md "Plugins", "Credentials", "Secrets at rest"; docs/secrets.md).

One module environment: one etcd member, one origin, an S3-compatible server (test_s3_fallback's s3rver harness),
a control plane "cp" (prefix /ap-hybrid) exporting to S3 and followed by the data plane "dp" (given cp's generated
keyring with --data-encryption-keyring), and a traditional process "tr" (prefix /ap-trad). Each test writes the
state it needs; writes wait for the serving process's config_revision, never for a fixed time.
"""

import json
import secrets

import pytest

from conftest import LOOPBACK, free_port, wait_for
from gateway_modes import header_values
from test_s3_fallback import BUCKET, S3Server

CLEAR_OWN = "own-key-" + secrets.token_hex(8)    # jack's key-auth key in his own plugins
CLEAR_CRED = "cred-key-" + secrets.token_hex(8)  # the key of jack's credential c1
TOKEN = "$ENC$v1$"


class Env:
    def __init__(self, etcd, s3, origin, cp, dp, tr, token, sync):
        self.etcd, self.s3, self.origin, self.cp, self.dp, self.tr = etcd, s3, origin, cp, dp, tr
        self.token = token
        self.sync = sync

    def upstream(self):
        return {"type": "roundrobin", "nodes": {self.origin.node: 1}}

    def write(self, proc, method, path, body=None, serving=None, expect=(200, 201)):
        """An Admin API write through `proc`, then wait until `serving` (default: proc itself when it proxies,
        else the data plane) serves its revision."""
        r = proc.admin(method, path, body)
        assert r.status in expect, "%s %s: %r" % (method, path, r)
        serving = serving or (proc if proc is self.tr else self.dp)
        revision = int(r.headers["x-portico-revision"])
        wait_for(lambda: serving.config_status()["config_revision"] >= revision, timeout=10,
                 message=lambda: "%s to serve revision %d: %r" % (serving.name, revision, serving.config_status()))
        return r


@pytest.fixture(scope="module")
def env(etcd_module, controlplane_module, dataplane_module, origin_module, tmp_path_factory):
    work = tmp_path_factory.mktemp("admin-plugins")
    credentials = work / "s3.credentials"
    credentials.write_text("portico-e2e\n%s\n" % secrets.token_hex(16))
    credentials.chmod(0o600)
    s3 = S3Server(work / "s3", credentials)
    try:
        s3.start()
        e = etcd_module(size=1, name="etcd-ap")
        origin = origin_module("ap")
        token = secrets.token_hex(12)
        tokens = work / "dp-tokens"
        tokens.write_text("dp-ap %s\ndp-nokey %s\n" % (token, token + "n"))
        tokens.chmod(0o600)
        sync = "%s:%d" % (LOOPBACK, free_port())
        cp = controlplane_module(e.endpoints_arg(), name="cp", etcd_prefix="/ap-hybrid", sync_listen=sync,
                                 dp_tokens_file=str(tokens), s3_endpoint=s3.endpoint, s3_bucket=BUCKET,
                                 s3_credentials_file=str(credentials), s3_keep=3, s3_lease_ttl=3,
                                 etcd_compaction_interval=0)
        dp = dataplane_module(["http://" + sync], cp.state_dir / "signing.pub", token, "dp-ap", name="dp",
                              data_encryption_keyring=str(cp.state_dir / "keyring"))
        tr = controlplane_module(e.endpoints_arg(), role="traditional", name="tr", etcd_prefix="/ap-trad",
                                 etcd_compaction_interval=0)
        yield Env(e, s3, origin, cp, dp, tr, token, sync)
    finally:
        s3.stop()


# ----------------------------------------------------------------------------------------------------------------
# GET /apisix/admin/plugins/list, /plugins/<name>, /plugins?all=true
# ----------------------------------------------------------------------------------------------------------------

def test_plugin_list_and_schemas_as_apisix_serves_them(env):
    cp = env.cp
    r = cp.admin("GET", "/plugins/list")
    assert r.status == 200, r
    names = r.body
    assert "key-auth" in names and "client-control" in names, names
    all_plugins = cp.admin("GET", "/plugins?all=true").body
    priorities = [all_plugins[n]["priority"] for n in names]
    assert priorities == sorted(priorities, reverse=True), "not in priority order: %r" % list(zip(names, priorities))
    assert cp.admin("GET", "/plugins/list?subsystem=http").body == names
    assert cp.admin("GET", "/plugins/list?subsystem=stream").body == []
    bad = cp.admin("GET", "/plugins/list?subsystem=tcp")
    assert (bad.status, bad.body) == (400, {"error_msg": "invalid subsystem passed"})

    # One plugin's schema: the route side with _meta injected, the consumer side with its encrypted fields.
    schema = cp.admin("GET", "/plugins/key-auth")
    assert schema.status == 200
    assert schema.body["properties"]["header"]["default"] == "apikey"
    assert "_meta" in schema.body["properties"]
    consumer = cp.admin("GET", "/plugins/key-auth?schema_type=consumer").body
    assert consumer["required"] == ["key"] and consumer["encrypt_fields"] == ["key"], consumer
    assert "_meta" not in consumer["properties"]
    assert all_plugins["key-auth"]["type"] == "auth"
    assert all_plugins["key-auth"]["consumer_schema"] == consumer
    assert all_plugins["key-auth"]["schema"] == schema.body
    assert "type" not in all_plugins["client-control"]
    assert cp.admin("GET", "/plugins?all=true&subsystem=stream").body == {}

    # Errors, with APISIX's status codes and messages.
    for path, status, message in [
            ("/plugins/asdf", 404, "plugin not found in subsystem http"),
            ("/plugins/key-auth?subsystem=stream", 404, "plugin not found in subsystem stream"),
            ("/plugins/key-auth?subsystem=asdf", 400, "unsupported subsystem: asdf"),
            ("/plugins/client-control?schema_type=consumer", 400, "not found schema"),
            ("/plugins", 404, "plugin not found in subsystem http")]:
        r = cp.admin("GET", path)
        assert (r.status, r.body) == (status, {"error_msg": message}), (path, r)
    r = cp.admin("PUT", "/plugins/list", {})
    assert r.status == 405 and r.headers["allow"] == "GET", r
    # A traditional process serves them too.
    assert env.tr.admin("GET", "/plugins/list").body == names


# ----------------------------------------------------------------------------------------------------------------
# Credentials: /apisix/admin/consumers/<username>/credentials[/<id>]
# ----------------------------------------------------------------------------------------------------------------

def test_credentials_crud_as_apisix(env):
    cp, etcd = env.cp, env.etcd
    r = cp.admin("PUT", "/consumers/crud/credentials/c1", {"plugins": {"key-auth": {"key": "k-crud-1"}}})
    assert (r.status, r.body) == (404, {"error_msg": "consumer not found"}), r
    assert cp.admin("GET", "/consumers/crud/credentials").status == 404

    assert cp.admin("PUT", "/consumers/crud", {"username": "crud", "desc": "no plugins"}).status == 201
    assert cp.admin("GET", "/consumers/crud/credentials").body == {"total": 0, "list": []}
    r = cp.admin("PUT", "/consumers/crud/credentials/c1",
                 {"desc": "key-auth for crud", "labels": {"team": "a"}, "plugins": {"key-auth": {"key": "k-crud-1"}}})
    assert r.status == 201, r
    assert r.body["key"] == "/ap-hybrid/consumers/crud/credentials/c1"
    value = r.body["value"]
    assert value["id"] == "c1" and value["desc"] == "key-auth for crud" and value["labels"] == {"team": "a"}
    assert value["plugins"]["key-auth"]["key"].startswith(TOKEN), value
    assert value["create_time"] > 0 and value["update_time"] > 0
    stored = etcd.get("/ap-hybrid/consumers/crud/credentials/c1")
    assert "k-crud-1" not in stored and TOKEN in stored, stored
    got = cp.admin("GET", "/consumers/crud/credentials/c1")
    assert got.status == 200 and got.body["value"] == value

    # The id may come in the body instead of the URL; a missing one is refused.
    r = cp.admin("PUT", "/consumers/crud/credentials", {"id": "c2", "plugins": {"key-auth": {"key": "k-crud-2"}}})
    assert r.status == 201 and r.body["key"] == "/ap-hybrid/consumers/crud/credentials/c2", r
    r = cp.admin("PUT", "/consumers/crud/credentials", {"plugins": {"key-auth": {"key": "k"}}})
    assert r.status == 400 and "missing credential id" in r.body["error_msg"], r

    # Only one plugin, an authentication plugin.
    r = cp.admin("PUT", "/consumers/crud/credentials/c3", {"plugins": {"client-control": {"max_body_size": 5}}})
    assert r.status == 400 and "only authentication plugins" in r.body["error_msg"], r
    r = cp.admin("PUT", "/consumers/crud/credentials/c3",
                 {"plugins": {"key-auth": {"key": "k3"}, "client-control": {"max_body_size": 5}}})
    assert r.status == 400 and r.body["errors"] == [
        {"path": "plugins", "reason": "expect object to have at most 1 properties"}], r

    # Listed under their consumer, never among consumers.
    listed = cp.admin("GET", "/consumers/crud/credentials").body
    assert listed["total"] == 2
    assert [it["key"] for it in listed["list"]] == ["/ap-hybrid/consumers/crud/credentials/c1",
                                                    "/ap-hybrid/consumers/crud/credentials/c2"]
    assert [it["value"]["id"] for it in listed["list"]] == ["c1", "c2"]
    consumers = cp.admin("GET", "/consumers").body
    assert [it["key"] for it in consumers["list"] if "crud" in it["key"]] == ["/ap-hybrid/consumers/crud"], consumers
    assert all("/credentials/" not in it["key"] for it in consumers["list"]), consumers

    # GET then PUT back: the token is kept as it is (it is this keyring's); a token of another keyring is not.
    back = cp.admin("PUT", "/consumers/crud/credentials/c1", got.body["value"])
    assert back.status == 200, back
    assert back.body["value"]["plugins"]["key-auth"]["key"] == value["plugins"]["key-auth"]["key"]
    forged = "$ENC$v1$other$" + "A" * 60
    r = cp.admin("PUT", "/consumers/crud/credentials/c1", {"plugins": {"key-auth": {"key": forged}}})
    assert r.status == 400 and r.body["errors"][0]["path"] == "plugins.key-auth.key", r
    assert "cannot decrypt" in r.body["errors"][0]["reason"], r

    # POST and PATCH are not supported on credentials (APISIX neither).
    assert cp.admin("POST", "/consumers/crud/credentials", {"plugins": {}}).status == 405
    assert cp.admin("PATCH", "/consumers/crud/credentials/c1", {"desc": "x"}).status == 405

    # DELETE one; then the consumer, which takes its credentials with it.
    assert cp.admin("DELETE", "/consumers/crud/credentials/c2").status == 200
    assert cp.admin("GET", "/consumers/crud/credentials/c2").status == 404
    assert cp.admin("GET", "/consumers/crud/credentials").body["total"] == 1
    assert cp.admin("DELETE", "/consumers/crud").status == 200
    assert etcd.keys("/ap-hybrid/consumers/crud") == []
    r = cp.admin("GET", "/consumers/crud/credentials")
    assert (r.status, r.body) == (404, {"message": "Key not found"}), r


def test_a_secret_written_into_etcd_in_clear_is_shown_as_a_token(env):
    env.etcd.put("/ap-hybrid/consumers/byhand",
                 '{"username":"byhand","plugins":{"key-auth":{"key":"clear-by-hand"}}}')
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(env.cp.admin("GET", "/consumers/byhand")),
                 timeout=5)
    assert r.body["value"]["plugins"]["key-auth"]["key"].startswith(TOKEN), r
    assert "clear-by-hand" not in r.raw.decode()
    listed = env.cp.admin("GET", "/consumers").raw.decode()
    assert "clear-by-hand" not in listed and "byhand" in listed
    assert env.cp.admin("DELETE", "/consumers/byhand").status == 200


# ----------------------------------------------------------------------------------------------------------------
# Hybrid: key-auth through a credential, and only tokens in etcd, the data plane's cache and S3
# ----------------------------------------------------------------------------------------------------------------

def jack(env, proc):
    """Consumer jack (his own key CLEAR_OWN), his credential c1 (CLEAR_CRED), a key-auth route auth.test."""
    env.write(proc, "PUT", "/consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": CLEAR_OWN}}})
    env.write(proc, "PUT", "/consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": CLEAR_CRED}}})
    return env.write(proc, "PUT", "/routes/auth", {"uri": "/echo", "hosts": ["auth.test"],
                                                   "plugins": {"key-auth": {}}, "upstream": env.upstream()})


def authenticated(env, serving, key):
    env.origin.reset()
    r = serving.get("/echo", host="auth.test", headers=[("apikey", key)])
    seen = env.origin.seen()
    return r, (seen[-1] if seen else None)


def check_key_auth(env, serving):
    r, seen = authenticated(env, serving, CLEAR_CRED)
    assert r.status == 200, r
    assert header_values(seen, "X-Consumer-Username") == ["jack"]
    assert header_values(seen, "X-Credential-Identifier") == ["c1"]
    r, seen = authenticated(env, serving, CLEAR_OWN)
    assert r.status == 200, r
    assert header_values(seen, "X-Consumer-Username") == ["jack"]
    assert header_values(seen, "X-Credential-Identifier") == []
    r, seen = authenticated(env, serving, "not-a-key")
    assert r.status == 401 and seen is None, r
    assert r.json() == {"message": "Invalid API key in request"}


def test_hybrid_key_auth_through_a_credential_and_only_tokens_at_rest(env):
    reply = jack(env, env.cp)
    check_key_auth(env, env.dp)
    revision = int(reply.headers["x-portico-revision"])

    # etcd: every value under the prefix, consumers and credentials.
    stored = env.etcd.get_prefix("/ap-hybrid/")
    assert TOKEN in stored["/ap-hybrid/consumers/jack"] and TOKEN in stored["/ap-hybrid/consumers/jack/credentials/c1"]
    for key, value in stored.items():
        assert CLEAR_OWN not in value and CLEAR_CRED not in value, key

    # The data plane's cache: the newest snapshot file, once it holds this revision.
    cached = wait_for(lambda: (lambda s: s[-1] if s and s[-1][0] >= revision else None)(env.dp.snapshots()),
                      timeout=10, message=lambda: "the cache to hold revision %d: %r" % (revision, env.dp.snapshots()))
    data = cached[1].read_bytes()
    assert b'"credentials":[' in data and TOKEN.encode() in data
    assert CLEAR_OWN.encode() not in data and CLEAR_CRED.encode() not in data

    # S3: the exported object of that revision or a later one.
    wait_for(lambda: env.cp.config_status()["s3_export"]["exported_revision"] >= revision, timeout=10,
             message=lambda: "cp to export revision %d: %r" % (revision, env.cp.config_status()["s3_export"]))
    exported = env.s3.revisions()[-1]
    data = env.s3.object_path(exported).read_bytes()
    assert TOKEN.encode() in data and b"jack/credentials/c1" in data
    assert CLEAR_OWN.encode() not in data and CLEAR_CRED.encode() not in data

    # The Admin API: GET and lists show tokens only.
    for path in ("/consumers/jack", "/consumers", "/consumers/jack/credentials", "/consumers/jack/credentials/c1"):
        raw = env.cp.admin("GET", path).raw.decode()
        assert TOKEN in raw and CLEAR_OWN not in raw and CLEAR_CRED not in raw, path


def test_data_plane_without_the_keyring_refuses_encrypted_consumers_and_keeps_its_config(env, dataplane):
    # Start from a config without secrets: a plain route.
    env.write(env.cp, "DELETE", "/consumers/jack")
    env.write(env.cp, "PUT", "/routes/open", {"uri": "/id", "hosts": ["open.test"], "upstream": env.upstream()})
    nokey = dataplane(["http://" + env.sync], env.cp.state_dir / "signing.pub", env.token + "n", "dp-nokey")
    assert nokey.get("/id", host="open.test").status == 200
    good = nokey.config_status()["config_revision"]

    # A consumer with an encrypted key: the keyed data plane takes it, this one refuses it and says why.
    reply = env.write(env.cp, "PUT", "/consumers/jack",
                      {"username": "jack", "plugins": {"key-auth": {"key": CLEAR_OWN}}})
    revision = int(reply.headers["x-portico-revision"])
    st = wait_for(lambda: (lambda st: st if "--data-encryption-keyring" in (st["sync_error"] or "") else None)(
        nokey.config_status()), timeout=10, message=lambda: "dp-nokey to report the missing keyring: %r"
                  % nokey.config_status())
    assert "consumers" in st["sync_error"] and "cannot be decrypted" in st["sync_error"], st["sync_error"]
    assert st["config_revision"] == good < revision
    assert nokey.get("/id", host="open.test").status == 200  # the last good config keeps serving
    r = nokey.get("/echo", host="auth.test", headers=[("apikey", CLEAR_OWN)])
    assert r.status == 401, r  # the route is there, jack is not
    assert "--data-encryption-keyring" in nokey.error_log()
    env.write(env.cp, "DELETE", "/routes/open")


# ----------------------------------------------------------------------------------------------------------------
# Traditional
# ----------------------------------------------------------------------------------------------------------------

def test_traditional_key_auth_through_a_credential(env):
    jack(env, env.tr)
    check_key_auth(env, env.tr)
    stored = env.etcd.get_prefix("/ap-trad/consumers/")
    assert stored and all(CLEAR_OWN not in v and CLEAR_CRED not in v for v in stored.values()), stored
    assert (env.tr.state_dir / "keyring").exists()
    assert oct((env.tr.state_dir / "keyring").stat().st_mode & 0o777) == "0o600"

    # Deleting the credential, then the consumer: their keys stop authenticating.
    env.write(env.tr, "DELETE", "/consumers/jack/credentials/c1")
    assert authenticated(env, env.tr, CLEAR_CRED)[0].status == 401
    assert authenticated(env, env.tr, CLEAR_OWN)[0].status == 200
    env.write(env.tr, "PUT", "/consumers/jack/credentials/c1", {"plugins": {"key-auth": {"key": CLEAR_CRED}}})
    assert authenticated(env, env.tr, CLEAR_CRED)[0].status == 200
    env.write(env.tr, "DELETE", "/consumers/jack")
    assert env.etcd.keys("/ap-trad/consumers/") == []
    assert authenticated(env, env.tr, CLEAR_CRED)[0].status == 401
    assert authenticated(env, env.tr, CLEAR_OWN)[0].status == 401


# ----------------------------------------------------------------------------------------------------------------
# limit-count `group`: one configuration per group, checked at write time over every resource
# ----------------------------------------------------------------------------------------------------------------

MISMATCHED = {"error_msg": "failed to check the configuration of plugin limit-count err: group conf mismatched"}


def test_limit_count_group_mismatch_is_refused_over_the_admin_api(env):
    cp, etcd = env.cp, env.etcd
    conf = {"count": 2, "time_window": 60, "group": "grp-admin", "key_type": "constant", "key": "k"}
    other = dict(conf, count=3)
    created = env.write(cp, "PUT", "/routes/grp-1", {"uri": "/grp-1", "plugins": {"limit-count": conf},
                                                      "upstream": env.upstream()})
    before = etcd.get_prefix("/ap-hybrid/")

    # Every kind that carries plugins, every verb that writes: refused, with APISIX's answer, nothing stored.
    refused = [
        ("PUT", "/routes/grp-2", {"uri": "/grp-2", "plugins": {"limit-count": other}, "upstream": env.upstream()}),
        ("POST", "/routes", {"uri": "/grp-3", "plugins": {"limit-count": other}, "upstream": env.upstream()}),
        ("PUT", "/services/grp-s", {"plugins": {"limit-count": dict(conf, rejected_code=429)}}),
        ("PUT", "/plugin_configs/grp-pc", {"plugins": {"limit-count": dict(conf, key="other")}}),
        ("PUT", "/global_rules/grp-g", {"plugins": {"limit-count": dict(conf, policy="redis",
                                                                          redis_host="127.0.0.1")}}),
        ("PUT", "/consumers/grpjack", {"username": "grpjack",
                                       "plugins": {"limit-count": dict(conf, show_limit_quota_header=False)}}),
        # A default made explicit is the same configuration only if it equals the default.
        ("PUT", "/routes/grp-2", {"uri": "/grp-2", "plugins": {"limit-count": dict(conf, rejected_code=503,
                                                                                   allow_degradation=True)},
                                  "upstream": env.upstream()}),
    ]
    for method, path, body in refused:
        r = cp.admin(method, path, body)
        assert (r.status, r.body) == (400, MISMATCHED), (method, path, r)
    assert etcd.get_prefix("/ap-hybrid/") == before

    # The same configuration (defaults written out or not) joins the group, from any kind.
    env.write(cp, "PUT", "/routes/grp-2", {"uri": "/grp-2", "plugins": {"limit-count": dict(conf, rejected_code=503)},
                                           "upstream": env.upstream()})
    env.write(cp, "PUT", "/services/grp-s", {"plugins": {"limit-count": conf}, "upstream": env.upstream()})

    # PATCH (merge and sub-path), and a member changing alone while others keep the old configuration.
    stored = etcd.get("/ap-hybrid/routes/grp-2")
    for path, body in [("/routes/grp-2", {"plugins": {"limit-count": {"count": 9}}}),
                       ("/routes/grp-2/plugins/limit-count/time_window", "30"),
                       ("/services/grp-s/plugins/limit-count", other)]:
        r = cp.admin("PATCH", path, body)
        assert (r.status, r.body) == (400, MISMATCHED), (path, r)
    r = cp.admin("PUT", "/routes/grp-1", {"uri": "/grp-1", "plugins": {"limit-count": other},
                                          "upstream": env.upstream()})
    assert (r.status, r.body) == (400, MISMATCHED), r
    assert etcd.get("/ap-hybrid/routes/grp-2") == stored
    assert cp.admin("GET", "/routes/grp-1").body["value"]["plugins"]["limit-count"]["count"] == 2

    # Once it is the group's only member, a resource may change the group's configuration.
    env.write(cp, "DELETE", "/routes/grp-2")
    env.write(cp, "DELETE", "/services/grp-s")
    r = env.write(cp, "PUT", "/routes/grp-1", {"uri": "/grp-1", "plugins": {"limit-count": other},
                                               "upstream": env.upstream()})
    assert r.status == 200 and int(r.headers["x-portico-revision"]) > int(created.headers["x-portico-revision"])
    env.write(cp, "DELETE", "/routes/grp-1")


# ----------------------------------------------------------------------------------------------------------------
# Secrets of every resource: a route's limit-count redis_password
# ----------------------------------------------------------------------------------------------------------------

def test_route_redis_password_is_encrypted_at_rest_and_the_data_plane_authenticates(env, redis):
    password = "redis-pw-" + secrets.token_hex(8)
    server = redis(password=password)
    conf = {"count": 2, "time_window": 60, "key_type": "constant", "key": "enc", "policy": "redis",
            "redis_host": server.host, "redis_port": server.port, "redis_password": password}
    r = env.write(env.cp, "PUT", "/routes/rl-enc", {"uri": "/echo", "hosts": ["rl-enc.test"],
                                                    "plugins": {"limit-count": conf}, "upstream": env.upstream()})
    shown = r.body["value"]["plugins"]["limit-count"]["redis_password"]
    assert shown.startswith(TOKEN), r

    # etcd holds a token; the Admin API shows one; a GET then PUT keeps it.
    raw = env.etcd.get("/ap-hybrid/routes/rl-enc")
    assert password not in raw
    assert json.loads(raw)["plugins"]["limit-count"]["redis_password"].startswith(TOKEN), raw
    got = env.cp.admin("GET", "/routes/rl-enc")
    assert password not in got.raw.decode() and TOKEN in got.raw.decode()
    assert password not in env.cp.admin("GET", "/routes").raw.decode()
    back = env.cp.admin("PUT", "/routes/rl-enc", got.body["value"])
    assert back.status == 200, back
    assert back.body["value"]["plugins"]["limit-count"]["redis_password"] == shown

    # The data plane decrypts it and authenticates to Redis (requirepass): the limit holds, counted in Redis.
    statuses = [env.dp.get("/echo", host="rl-enc.test").status for _ in range(3)]
    assert statuses == [200, 200, 503], statuses
    assert int(server.cli("DBSIZE")) >= 1, server.cli("KEYS", "*")
    env.write(env.cp, "DELETE", "/routes/rl-enc")


# ----------------------------------------------------------------------------------------------------------------
# An upstream's tls.client_key: a token in etcd and in answers, decrypted by the data plane (docs/secrets.md)
# ----------------------------------------------------------------------------------------------------------------

def test_upstream_client_key_is_encrypted_at_rest_and_never_shown(env, tmp_path):
    from tls_certs import TestCA
    client = TestCA(tmp_path / "ca").issue("gw-client", client=True)
    cert, key = open(client.cert).read(), open(client.key).read()
    secret_line = key.strip().splitlines()[1]  # a line of the key's base64 body
    tls = {"client_cert": cert, "client_key": key}
    env.write(env.cp, "PUT", "/upstreams/mtls-up", dict(env.upstream(), tls=tls))
    env.write(env.cp, "PUT", "/routes/mtls-inline", {"uri": "/id", "hosts": ["up-key.test"],
                                                     "upstream": dict(env.upstream(), tls=tls)})
    env.write(env.cp, "PUT", "/services/mtls-svc", {"upstream": dict(env.upstream(), tls=tls)})
    # etcd holds tokens, never the PEM key.
    stored = env.etcd.get_prefix("/ap-hybrid/")
    for name, upstream in (("upstreams/mtls-up", None), ("routes/mtls-inline", "upstream"),
                           ("services/mtls-svc", "upstream")):
        raw = stored["/ap-hybrid/" + name]
        assert secret_line not in raw and "PRIVATE KEY" not in raw, name
        value = json.loads(raw)
        tls_value = (value[upstream] if upstream else value)["tls"]
        assert tls_value["client_key"].startswith(TOKEN), (name, tls_value)
        assert tls_value["client_cert"] == cert
    # Answers show the token, lists too.
    for path in ("/upstreams/mtls-up", "/upstreams", "/routes/mtls-inline", "/routes", "/services/mtls-svc"):
        raw = env.cp.admin("GET", path).raw.decode()
        assert TOKEN in raw and secret_line not in raw and "PRIVATE KEY" not in raw, path
    # The data plane decrypted it (a key it could not read would refuse the route: 404).
    r = env.dp.get("/id", host="up-key.test")
    assert r.status == 200, r
    # A GET then a PUT keeps the key (the token round-trips).
    got = env.cp.admin("GET", "/upstreams/mtls-up").body["value"]
    r = env.cp.admin("PUT", "/upstreams/mtls-up", {k: v for k, v in got.items() if k.endswith("time") is False})
    assert r.status == 200, r
    assert json.loads(env.etcd.get("/ap-hybrid/upstreams/mtls-up"))["tls"]["client_key"] == got["tls"]["client_key"]
    # A key written into etcd in clear by hand is shown as a token.
    env.etcd.put("/ap-hybrid/upstreams/byhand", json.dumps(dict(env.upstream(), id="byhand", tls=tls)))
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(env.cp.admin("GET", "/upstreams/byhand")),
                 timeout=5)
    assert r.body["value"]["tls"]["client_key"].startswith(TOKEN) and secret_line not in r.raw.decode(), r
    for path in ("/routes/mtls-inline", "/services/mtls-svc", "/upstreams/mtls-up", "/upstreams/byhand"):
        assert env.cp.admin("DELETE", path).status == 200, path

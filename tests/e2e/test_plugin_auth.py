"""Security tests of the auth plugins (key-auth, basic-auth, jwt-auth) through the proxy, in the three modes
(gateway_modes.py: file, admin, hybrid; one gateway per mode for the module).

What an attacker may try and what must hold: a request without, with an empty or with a wrong credential never
reaches the origin (asserted on what the origin saw, not only on the status); another consumer's secret does
not authenticate as this one; expired, not-yet-valid, unsigned (alg none), algorithm-confused and malformed
tokens are refused; a credential sent twice is read from one place only, in APISIX's order; hide_credentials
means the origin never sees the credential, wherever it was sent; X-Consumer-Username is the gateway's, never
the client's; a consumer's own plugin overrides the route's; consumers added, changed and deleted take effect
without a restart. Bodies and challenges are APISIX 3.x's.

Tokens are made here (PyJWT for RS256, hmac for HS256), apart from the gateway's code.
"""

import base64
import hashlib
import hmac
import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import route
from gateway_modes import header_values

# ---- credentials -----------------------------------------------------------------------------------------------

_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PRIVATE = _RSA.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
BAD_PEM = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
RSA_PUBLIC = _RSA.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(payload, secret, header=None):
    """A compact JWS signed with HMAC-SHA256 over `secret` (any bytes: PyJWT refuses a PEM as an HMAC secret,
    which the algorithm-confusion test needs)."""
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}))
    body = b64url(json.dumps(payload))
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


def rs256(payload):
    return pyjwt.encode(payload, RSA_PRIVATE, algorithm="RS256")


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def consumer(name, **plugins):
    return {"username": name, "plugins": {k.replace("_", "-"): v for k, v in plugins.items()}}


ALICE = consumer("alice", key_auth={"key": "alice-key"},
                 basic_auth={"username": "alice", "password": "alice-pw"},
                 jwt_auth={"key": "alice-jwt", "secret": "alice-secret"})
BOB = consumer("bob", key_auth={"key": "bob-key"},
               basic_auth={"username": "bob", "password": "bob-pw"},
               jwt_auth={"key": "bob-jwt", "secret": "bob-secret"})
CAROL = consumer("carol", jwt_auth={"key": "carol-jwt", "algorithm": "RS256", "public_key": RSA_PUBLIC})
DAVE = consumer("dave", jwt_auth={"key": "dave-jwt", "secret": "dave-secret", "lifetime_grace_period": 100})

HOSTS = {
    "key": ("key-auth", {}),
    "key-hide": ("key-auth", {"hide_credentials": True}),
    "basic": ("basic-auth", {}),
    "basic-hide": ("basic-auth", {"hide_credentials": True}),
    "jwt": ("jwt-auth", {}),
    "jwt-hide": ("jwt-auth", {"hide_credentials": True}),
}


def base_doc(gw, consumers=(ALICE, BOB, CAROL, DAVE)):
    routes = [route("r-" + name, "/echo", gw.origin, host=name + ".test", plugins={plugin: conf})
              for name, (plugin, conf) in HOSTS.items()]
    routes.append(route("r-open", "/echo", gw.origin, host="open.test"))
    return {"routes": routes, "consumers": list(consumers)}


@pytest.fixture
def gw(gateway_module):
    gateway_module.apply(base_doc(gateway_module))
    return gateway_module


def get(gw, host, headers=(), target="/echo"):
    return gw.request("GET", target, headers=list(headers), host=host + ".test")


def message(r):
    return json.loads(r.body)["message"]


def assert_refused(gw, r, msg, challenge=None):
    assert r.status == 401, (r.status, r.body)
    assert message(r) == msg
    if challenge is not None:
        assert r.header("WWW-Authenticate") == challenge
    assert gw.origin_seen() == [], "a refused request reached the origin"


def seen_as(gw, r):
    """The X-Consumer-Username values the origin received for the one request just made."""
    assert r.status == 200, (r.status, r.body)
    seen = gw.origin_seen()
    assert len(seen) == 1, seen
    gw.origin.reset()
    return header_values(seen[0], "X-Consumer-Username")


# ---- missing, empty, wrong -------------------------------------------------------------------------------------

def test_missing_empty_and_wrong_credentials_never_reach_the_origin(gw):
    assert_refused(gw, get(gw, "key"), "Missing API key in request")
    assert_refused(gw, get(gw, "key", [("apikey", "")]), "Invalid API key in request")
    assert_refused(gw, get(gw, "key", target="/echo?apikey="), "Invalid API key in request")
    assert_refused(gw, get(gw, "key", [("apikey", "alice-ke")]), "Invalid API key in request")
    assert_refused(gw, get(gw, "key", [("apikey", "ALICE-KEY")]), "Invalid API key in request")

    challenge = 'Basic realm="basic"'
    assert_refused(gw, get(gw, "basic"), "Missing authorization in request", challenge)
    assert_refused(gw, get(gw, "basic", [("Authorization", "")]), "Invalid authorization in request", challenge)
    assert_refused(gw, get(gw, "basic", [("Authorization", "Basic")]), "Invalid authorization in request",
                   challenge)
    assert_refused(gw, get(gw, "basic", [("Authorization", "Basic !!!")]), "Invalid authorization in request")
    assert_refused(gw, get(gw, "basic", [("Authorization", "Bearer " + b64url("alice:alice-pw"))]),
                   "Invalid authorization in request")
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("alice", "wrong"))]),
                   "Invalid user authorization", challenge)
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("alice", ""))]), "Invalid user authorization")
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("nobody", "alice-pw"))]),
                   "Invalid user authorization")

    challenge = 'Bearer realm="jwt"'
    assert_refused(gw, get(gw, "jwt"), "Missing JWT token in request", challenge)
    assert_refused(gw, get(gw, "jwt", [("Authorization", "")]), "JWT token invalid", challenge)
    assert_refused(gw, get(gw, "jwt", [("Authorization", "Bearer ")]), "JWT token invalid")
    assert_refused(gw, get(gw, "jwt", target="/echo?jwt="), "JWT token invalid")
    assert_refused(gw, get(gw, "jwt", [("Authorization", hs256({"key": "alice-jwt"}, "wrong"))]),
                   "failed to verify jwt", challenge)
    assert_refused(gw, get(gw, "jwt", [("Authorization", hs256({"key": "nobody"}, "alice-secret"))]),
                   "Invalid user key in JWT token")
    assert_refused(gw, get(gw, "jwt", [("Authorization", hs256({"sub": "alice"}, "alice-secret"))]),
                   "missing user key in JWT token")

    # The same credentials, right, pass: what was refused above was the credential, not the route.
    assert seen_as(gw, get(gw, "key", [("apikey", "alice-key")])) == ["alice"]
    assert seen_as(gw, get(gw, "basic", [("Authorization", basic("alice", "alice-pw"))])) == ["alice"]
    bearer = "Bearer " + hs256({"key": "alice-jwt"}, "alice-secret")
    assert seen_as(gw, get(gw, "jwt", [("Authorization", bearer)])) == ["alice"]


def test_another_consumers_secret_does_not_authenticate_as_this_one(gw):
    # basic-auth: alice's username with bob's password.
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("alice", "bob-pw"))]),
                   "Invalid user authorization")
    # jwt-auth: a token claiming alice's key, signed with bob's secret.
    assert_refused(gw, get(gw, "jwt", [("Authorization", hs256({"key": "alice-jwt"}, "bob-secret"))]),
                   "failed to verify jwt")
    # ... or with carol's RSA key (alice is HS256).
    assert_refused(gw, get(gw, "jwt", [("Authorization", rs256({"key": "alice-jwt"}))]), "failed to verify jwt")
    # key-auth: bob's key is bob, never alice.
    assert seen_as(gw, get(gw, "key", [("apikey", "bob-key")])) == ["bob"]
    assert seen_as(gw, get(gw, "jwt", [("Authorization", hs256({"key": "bob-jwt"}, "bob-secret"))])) == ["bob"]


# ---- tokens ----------------------------------------------------------------------------------------------------

def test_expired_and_not_yet_valid_tokens(gw):
    now = int(time.time())

    def jwt(payload, secret="alice-secret"):
        return get(gw, "jwt", [("Authorization", "Bearer " + hs256(payload, secret))])

    assert_refused(gw, jwt({"key": "alice-jwt", "exp": now - 5}), "failed to verify jwt")
    assert_refused(gw, jwt({"key": "alice-jwt", "nbf": now + 60}), "failed to verify jwt")
    assert_refused(gw, jwt({"key": "alice-jwt", "exp": "never"}), "failed to verify jwt")
    assert seen_as(gw, jwt({"key": "alice-jwt", "exp": now + 60, "nbf": now - 60})) == ["alice"]
    # dave allows 100 s of clock skew: 50 s late or early passes, 500 s does not.
    assert seen_as(gw, jwt({"key": "dave-jwt", "exp": now - 50}, "dave-secret")) == ["dave"]
    assert seen_as(gw, jwt({"key": "dave-jwt", "nbf": now + 50}, "dave-secret")) == ["dave"]
    assert_refused(gw, jwt({"key": "dave-jwt", "exp": now - 500}, "dave-secret"), "failed to verify jwt")


def test_alg_none_algorithm_confusion_and_malformed_tokens(gw):
    payload = b64url(json.dumps({"key": "alice-jwt"}))
    unsigned = [b64url(json.dumps({"alg": alg, "typ": "JWT"})) + "." + payload + "." + sig
                for alg in ("none", "None", "NONE", "nOnE") for sig in ("", b64url("x"))]
    for token in unsigned:
        assert_refused(gw, get(gw, "jwt", [("Authorization", token)]), "JWT token invalid")

    # carol is RS256: a token HMAC-signed with her public key PEM as the secret, naming HS256, is refused.
    for secret in (RSA_PUBLIC, RSA_PUBLIC.strip(), RSA_PUBLIC.encode()):
        forged = hs256({"key": "carol-jwt"}, secret)
        assert_refused(gw, get(gw, "jwt", [("Authorization", "Bearer " + forged)]), "failed to verify jwt")
    forged = hs256({"key": "carol-jwt"}, RSA_PUBLIC, header={"alg": "HS256", "typ": "JWT", "kid": "x"})
    assert_refused(gw, get(gw, "jwt", [("Authorization", forged)]), "failed to verify jwt")
    assert seen_as(gw, get(gw, "jwt", [("Authorization", "Bearer " + rs256({"key": "carol-jwt"}))])) == ["carol"]

    good = hs256({"key": "alice-jwt"}, "alice-secret")
    head, body, sig = good.split(".")
    malformed = [
        "garbage", "a.b", "a.b.c.d.e", head + "." + body, head + "." + body + ".",
        "." + body + "." + sig, head + ".." + sig,
        head + "=." + body + "." + sig,                     # padding
        head + "." + body + "." + sig[:-2],                 # truncated signature
        b64url("not json") + "." + body + "." + sig,
        b64url("[1]") + "." + body + "." + sig,
        head + "." + b64url("[1]") + "." + sig,
        b64url(json.dumps({"alg": "HS256", "crit": ["exp"]})) + "." + body + "." + sig,
        b64url('{"alg":"HS256","alg":"none"}') + "." + body + "." + sig,
        good + "x" * 9000,
    ]
    for token in malformed:
        r = get(gw, "jwt", [("Authorization", token)])
        assert r.status in (401, 431, 400), (token[:60], r.status)
        if r.status == 401:
            assert message(r) in ("JWT token invalid", "failed to verify jwt"), (token[:60], r.body)
        assert gw.origin_seen() == [], token[:60]


# ---- where credentials are read from, and hidden ---------------------------------------------------------------

def test_a_credential_sent_twice_is_read_from_the_first_place_only(gw):
    # key-auth: the header, then the query.
    assert seen_as(gw, get(gw, "key", [("apikey", "alice-key")], "/echo?apikey=bob-key")) == ["alice"]
    assert_refused(gw, get(gw, "key", [("apikey", "wrong")], "/echo?apikey=alice-key"),
                   "Invalid API key in request")
    assert seen_as(gw, get(gw, "key", target="/echo?apikey=bob-key&apikey=alice-key")) == ["bob"]

    alice = hs256({"key": "alice-jwt"}, "alice-secret")
    bob = hs256({"key": "bob-jwt"}, "bob-secret")
    # jwt-auth: the header, then the query, then the cookie.
    assert seen_as(gw, get(gw, "jwt", [("Authorization", alice)], "/echo?jwt=" + bob)) == ["alice"]
    assert_refused(gw, get(gw, "jwt", [("Authorization", "garbage")], "/echo?jwt=" + alice), "JWT token invalid")
    assert seen_as(gw, get(gw, "jwt", [("Cookie", "jwt=" + alice)], "/echo?jwt=" + bob)) == ["bob"]
    assert_refused(gw, get(gw, "jwt", [("Cookie", "jwt=" + alice)], "/echo?jwt=garbage"), "JWT token invalid")
    assert seen_as(gw, get(gw, "jwt", [("Cookie", "a=1; jwt=" + alice)])) == ["alice"]
    # basic-auth: two Authorization fields, the first is read.
    assert seen_as(gw, get(gw, "basic", [("Authorization", basic("bob", "bob-pw")),
                                         ("Authorization", basic("alice", "alice-pw"))])) == ["bob"]


def only_request(gw):
    seen = gw.origin_seen()
    assert len(seen) == 1, seen
    gw.origin.reset()
    return seen[0]


def test_hide_credentials_keeps_every_copy_from_the_origin(gw):
    # key-auth: the key in the header and in the query; both are removed, other arguments stay.
    r = get(gw, "key-hide", [("apikey", "alice-key")], "/echo?a=1&apikey=alice-key&b=2")
    assert r.status == 200
    rec = only_request(gw)
    assert header_values(rec, "apikey") == [] and "alice-key" not in rec["target"], rec
    assert rec["target"] == "/echo?a=1&b=2"
    # Without hide_credentials the origin sees it (the test above would fail without the feature).
    assert get(gw, "key", [("apikey", "alice-key")]).status == 200
    assert header_values(only_request(gw), "apikey") == ["alice-key"]

    auth = basic("alice", "alice-pw")
    assert get(gw, "basic-hide", [("Authorization", auth)]).status == 200
    assert header_values(only_request(gw), "Authorization") == []
    assert get(gw, "basic", [("Authorization", auth)]).status == 200
    assert header_values(only_request(gw), "Authorization") == [auth]

    # jwt-auth: read from the header; the copies in the query and the cookie go too.
    token = hs256({"key": "alice-jwt"}, "alice-secret")
    r = get(gw, "jwt-hide", [("Authorization", "Bearer " + token), ("Cookie", "a=1; jwt=%s; b=2" % token)],
            "/echo?x=1&jwt=%s&y=2" % token)
    assert r.status == 200
    rec = only_request(gw)
    text = json.dumps(rec)
    assert token not in text and token.split(".")[2] not in text, rec
    assert rec["target"] == "/echo?x=1&y=2"
    assert header_values(rec, "Cookie") == ["a=1; b=2"]
    assert header_values(rec, "X-Consumer-Username") == ["alice"]
    # Read from the cookie alone: nothing is left of the Cookie field.
    assert get(gw, "jwt-hide", [("Cookie", "jwt=" + token)]).status == 200
    rec = only_request(gw)
    assert header_values(rec, "Cookie") == [] and token not in json.dumps(rec)
    assert get(gw, "jwt", [("Cookie", "jwt=" + token)]).status == 200
    assert header_values(only_request(gw), "Cookie") == ["jwt=" + token]


# ---- who the origin is told the caller is ----------------------------------------------------------------------

def test_x_consumer_username_is_the_gateways_never_the_clients(gw):
    forged = [("X-Consumer-Username", "admin"), ("x-consumer-username", "root"),
              ("X-Credential-Identifier", "c1")]
    cases = [
        ("key", [("apikey", "bob-key")], "bob"),
        ("basic", [("Authorization", basic("alice", "alice-pw"))], "alice"),
        ("jwt", [("Authorization", rs256({"key": "carol-jwt"}))], "carol"),
    ]
    for host, creds, who in cases:
        r = get(gw, host, creds + forged)
        assert r.status == 200, (host, r.status, r.body)
        rec = only_request(gw)
        assert header_values(rec, "X-Consumer-Username") == [who], (host, rec)
        assert header_values(rec, "X-Credential-Identifier") == [], (host, rec)
    # A refused request with a forged identity goes nowhere.
    assert_refused(gw, get(gw, "key", forged), "Missing API key in request")


def test_a_consumers_own_plugin_overrides_the_routes(gw):
    """Precedence consumer > route, seen with proxy-rewrite (a request header the origin receives)."""
    def rewrite(value):
        return {"proxy-rewrite": {"headers": {"set": {"X-Layer": value}}}}

    doc = base_doc(gw)
    alice = json.loads(json.dumps(ALICE))
    alice["plugins"].update(rewrite("consumer"))
    doc["consumers"] = [alice, BOB, CAROL, DAVE]
    for r in doc["routes"]:
        if r["id"] == "r-key":
            r["plugins"].update(rewrite("route"))
    gw.apply(doc)
    assert get(gw, "key", [("apikey", "alice-key")]).status == 200
    assert header_values(only_request(gw), "X-Layer") == ["consumer"]
    assert get(gw, "key", [("apikey", "bob-key")]).status == 200
    assert header_values(only_request(gw), "X-Layer") == ["route"]


# ---- consumers change without a restart ------------------------------------------------------------------------

def test_consumers_added_changed_and_deleted_take_effect(gw):
    erin_token = hs256({"key": "erin-jwt"}, "erin-secret")
    assert_refused(gw, get(gw, "key", [("apikey", "erin-key")]), "Invalid API key in request")
    gw.put("consumers", "erin", consumer("erin", key_auth={"key": "erin-key"},
                                         basic_auth={"username": "erin", "password": "erin-pw"},
                                         jwt_auth={"key": "erin-jwt", "secret": "erin-secret"}))
    assert seen_as(gw, get(gw, "key", [("apikey", "erin-key")])) == ["erin"]
    assert seen_as(gw, get(gw, "basic", [("Authorization", basic("erin", "erin-pw"))])) == ["erin"]
    assert seen_as(gw, get(gw, "jwt", [("Authorization", erin_token)])) == ["erin"]

    # Changed: the old key, password and secret stop working at once.
    gw.put("consumers", "erin", consumer("erin", key_auth={"key": "erin-key-2"},
                                         basic_auth={"username": "erin", "password": "erin-pw-2"},
                                         jwt_auth={"key": "erin-jwt", "secret": "erin-secret-2"}))
    assert_refused(gw, get(gw, "key", [("apikey", "erin-key")]), "Invalid API key in request")
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("erin", "erin-pw"))]),
                   "Invalid user authorization")
    assert_refused(gw, get(gw, "jwt", [("Authorization", erin_token)]), "failed to verify jwt")
    assert seen_as(gw, get(gw, "key", [("apikey", "erin-key-2")])) == ["erin"]
    erin_token = hs256({"key": "erin-jwt"}, "erin-secret-2")
    assert seen_as(gw, get(gw, "jwt", [("Authorization", erin_token)])) == ["erin"]

    gw.delete("consumers", "erin")
    assert_refused(gw, get(gw, "key", [("apikey", "erin-key-2")]), "Invalid API key in request")
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("erin", "erin-pw-2"))]),
                   "Invalid user authorization")
    assert_refused(gw, get(gw, "jwt", [("Authorization", erin_token)]), "Invalid user key in JWT token")
    # The others were never disturbed.
    assert seen_as(gw, get(gw, "key", [("apikey", "alice-key")])) == ["alice"]


def test_a_credential_two_consumers_share_authenticates_neither(gw):
    twin = consumer("twin", key_auth={"key": "alice-key"}, basic_auth={"username": "alice", "password": "x-pw"},
                    jwt_auth={"key": "alice-jwt", "secret": "alice-secret"})
    doc = base_doc(gw, (ALICE, BOB, twin))
    gw.apply(doc)
    assert_refused(gw, get(gw, "key", [("apikey", "alice-key")]), "Invalid API key in request")
    assert_refused(gw, get(gw, "basic", [("Authorization", basic("alice", "alice-pw"))]),
                   "Invalid user authorization")
    assert_refused(gw, get(gw, "jwt", [("Authorization", hs256({"key": "alice-jwt"}, "alice-secret"))]),
                   "Invalid user key in JWT token")
    assert seen_as(gw, get(gw, "key", [("apikey", "bob-key")])) == ["bob"]
    # Once the twin is gone, alice's credentials are hers alone again.
    gw.delete("consumers", "twin")
    assert seen_as(gw, get(gw, "key", [("apikey", "alice-key")])) == ["alice"]
    assert seen_as(gw, get(gw, "basic", [("Authorization", basic("alice", "alice-pw"))])) == ["alice"]
    token = hs256({"key": "alice-jwt"}, "alice-secret")
    assert seen_as(gw, get(gw, "jwt", [("Authorization", token)])) == ["alice"]


# ---- configurations refused when written -----------------------------------------------------------------------

@pytest.mark.parametrize("conf, field, reason", [
    ({"key": "k"}, "secret", 'property "secret" is required when "algorithm" is "HS256"'),
    ({"key": "k", "algorithm": "RS256"}, "public_key", "missing valid public key"),
    ({"key": "k", "algorithm": "RS256", "public_key": BAD_PEM}, "public_key", "invalid public key"),
    ({"key": "k", "algorithm": "ES256", "public_key": RSA_PUBLIC}, "public_key", "invalid public key: ES256"),
    ({"key": "k", "algorithm": "RS256", "public_key": RSA_PUBLIC, "secret": "s"}, "secret", "is not used"),
    ({"key": "k", "secret": "%%%", "base64_secret": True}, "secret", "not in base64 format"),
    ({"key": "k", "algorithm": "RS256", "public_key": RSA_PUBLIC, "private_key": RSA_PRIVATE}, "private_key",
     "additional properties forbidden"),
])
def test_unusable_jwt_consumers_are_refused(gw, conf, field, reason):
    doc = base_doc(gw)
    doc["consumers"].append(consumer("frank", jwt_auth=conf))
    err = gw.apply_expect_error(doc)
    assert err.resource == ("consumers", "frank"), err
    assert err.fields == ["plugins.jwt-auth." + field], err
    assert any(reason in r for _, r in err.errors), err.errors
    # What served before still does.
    alice = hs256({"key": "alice-jwt"}, "alice-secret")
    assert seen_as(gw, get(gw, "jwt", [("Authorization", alice)])) == ["alice"]


def test_the_basic_auth_challenge_realm_is_configurable(gw):
    doc = base_doc(gw)
    doc["routes"].append(route("r-realm", "/echo", gw.origin, host="realm.test",
                               plugins={"basic-auth": {"realm": "staff only"},
                                        "jwt-auth": {"realm": "api", "header": "X-Token"}}))
    gw.apply(doc)
    r = get(gw, "realm")
    # jwt-auth (2510) runs after basic-auth (2520): basic-auth answers first.
    assert_refused(gw, r, "Missing authorization in request", 'Basic realm="staff only"')
    r = get(gw, "realm", [("Authorization", basic("alice", "alice-pw"))])
    assert_refused(gw, r, "Missing JWT token in request", 'Bearer realm="api"')
    r = get(gw, "realm", [("Authorization", basic("alice", "alice-pw")),
                          ("X-Token", hs256({"key": "bob-jwt"}, "bob-secret"))])
    # Both pass; the later one (jwt-auth) decides who the consumer is, as in APISIX.
    assert seen_as(gw, r) == ["bob"]

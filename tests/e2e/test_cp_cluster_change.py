"""The etcd cluster behind a running control plane is replaced by another one (say, restored from a backup)
at the same endpoints: the control plane notices the new cluster id and reads everything again instead of
resuming its watch at a revision that means something else in the new cluster (docs/admin-api.md,
"Consistency and failures")."""

import json

from conftest import wait_for
from etcd_cluster import EtcdCluster


def served(tr, host):
    try:
        r = tr.get("/id", host=host)
    except OSError as ex:
        return ("error", repr(ex))
    return r.status, (r.body or b"").decode(errors="replace").strip()


def route(host, origin):
    return {"uri": "/id", "hosts": [host], "upstream": {"type": "roundrobin", "nodes": {origin.node: 1}}}


def test_new_cluster_id_triggers_full_reread(etcd, controlplane, origin, tmp_path):
    first = etcd(size=1, name="first")
    o = origin("cc")
    tr = controlplane(first.endpoints_arg(), role="traditional", name="trad")
    for host in ("old-a.test", "old-b.test"):
        st, _, body = tr.admin("PUT", "/routes/%s" % host.split(".")[0], route(host, o))
        assert st == 201, body
    wait_for(lambda: served(tr, "old-b.test") == (200, "cc"), timeout=5, message="old-b served")
    old_cluster = tr.config_status()["etcd_cluster_id"]

    # A second cluster at the very same address, holding other data at a *higher* revision than the copy has:
    # resuming the watch from the old revision would silently miss everything written there.
    first.stop_all()
    second = EtcdCluster(tmp_path / "second", size=1, name="second")
    second.members[0].client_port = first.members[0].client_port
    second.members[0].peer_port = first.members[0].peer_port
    second.start_all()
    try:
        for i in range(12):  # move the revision past the old cluster's
            second.put("/filler/%d" % i, "x")
        second.put("/apisix/routes/new", json.dumps(route("new.test", o)))

        wait_for(lambda: tr.config_status()["etcd_cluster_id"] not in ("", old_cluster), timeout=15,
                 message=lambda: "a new cluster id in /status/config: %r\n%s" % (tr.config_status(), tr.log_tail()))
        wait_for(lambda: served(tr, "new.test") == (200, "cc"), timeout=10,
                 message=lambda: "new.test served after the switch: %r" % (served(tr, "new.test"),))
        # The old cluster's routes are gone from the copy, not merged into it.
        wait_for(lambda: served(tr, "old-a.test")[0] == 404, timeout=5, message="old-a no longer routed")
        status = tr.config_status()
        assert status["resources"]["routes"] == 1, status
        assert not status["stale"], status
        assert "cluster id" in tr.error_log(), tr.log_tail()
        # Writes go to the new cluster.
        st, _, body = tr.admin("PUT", "/routes/after", route("after.test", o))
        assert st == 201, body
        assert second.get("/apisix/routes/after") is not None
    finally:
        second.destroy()

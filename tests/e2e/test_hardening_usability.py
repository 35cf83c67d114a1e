"""What a new user tripped on (issue 9): the command line's answers, a repaired file clearing its error, and
`make run` stopping cleanly and quietly on SIGINT and SIGTERM."""

import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PORTICO_BIN, make_config, route, wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_portico(*args, timeout=5.0):
    return subprocess.run([str(PORTICO_BIN), *args], capture_output=True, text=True, timeout=timeout)


def test_unknown_option_is_named_as_unknown():
    r = run_portico("--bogus")
    assert r.returncode == 2
    assert r.stderr.startswith("portico: unknown option --bogus\n"), r.stderr[:200]
    # A known option without its value is still told so.
    r = run_portico("--listen")
    assert r.returncode == 2
    assert r.stderr.startswith("portico: --listen needs a value\n"), r.stderr[:200]


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-1"])
def test_durations_out_of_range_are_refused(value):
    # "inf" and 1e300 overflowed the nanosecond clock: every deadline was already past.
    r = run_portico("--keepalive-timeout", value)
    assert r.returncode == 2
    assert r.stderr.startswith("portico: --keepalive-timeout needs a number of seconds from 0 to 31536000\n"), \
        r.stderr[:200]


def test_tiny_compaction_interval_is_refused():
    r = run_portico("--etcd-compaction-interval", "0.001")
    assert r.returncode == 2
    assert r.stderr.startswith("portico: --etcd-compaction-interval is 0 (off) or at least 0.1 seconds\n"), \
        r.stderr[:200]


def test_missing_config_file_fails_fast(tmp_path):
    missing = tmp_path / "nonexistent.yaml"
    r = run_portico("--config", str(missing), "--listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0")
    assert r.returncode == 2
    assert r.stderr.startswith("portico: --config %s: No such file or directory\n" % missing), r.stderr[:200]


def test_no_arguments_names_every_role():
    r = run_portico()
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    assert "data_plane" in first and "traditional" in first and "control_plane" in first, first


def test_repaired_file_clears_last_error(origin, portico):
    o = origin("fix")
    good = make_config([route("r", "/id", o)])
    p = portico(good)
    served = p.config_status()
    assert served["last_error"] == ""
    mark = p.log_size()
    p.write_config("routes: [\n#END\n", raw=True)  # broken: the last good config keeps serving
    wait_for(lambda: p.config_status()["last_error"] != "", timeout=5, message="the broken file's error")
    assert "config rejected" in p.log_since(mark)
    p.write_config(good)  # back to exactly what serves: nothing to apply, and nothing wrong any more
    wait_for(lambda: "matches the serving config again" in p.log_since(mark), timeout=5,
             message=lambda: "the repair logged; log: " + p.log_since(mark)[-1500:])
    st = p.config_status()
    assert st["last_error"] == ""
    assert st["generation"] == served["generation"] and st["hash"] == served["hash"]
    assert p.get("/id").status == 200


# --- make run --------------------------------------------------------------------------------------------

DEMO_PORTS = (9080, 9091, 9101, 9102, 9180, 12379, 12380)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ready(port=9091):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_make_run(tmp_path, mode):
    busy = [p for p in DEMO_PORTS if port_open(p)]
    assert not busy, "the demo's ports are taken: %s" % busy
    out = open(tmp_path / "make-run.out", "w")
    env = dict(os.environ, RUN_DIR=str(tmp_path / "run"), MODE=mode)
    # As from an interactive shell: make leads its own process group with SIGINT at its default (a background
    # job of a script would inherit SIGINT ignored, and make keeps it so).
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(ready, timeout=90, interval=0.2,
                 message=lambda: "make run never became ready: " + (tmp_path / "make-run.out").read_text()[-2000:])
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        raise
    return proc


def stop_make_run(tmp_path, proc, send):
    try:
        send(proc)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    wait_for(lambda: not any(port_open(p) for p in DEMO_PORTS), timeout=10,
             message=lambda: "demo ports still open: %s" % [p for p in DEMO_PORTS if port_open(p)])
    text = (tmp_path / "make-run.out").read_text()
    # No "make: *** [run] Error 130", no warning from a Portico that lost etcd before it stopped, no Python
    # traceback from an interrupted origin.
    assert not re.search(r"\*\*\* .*Error", text), text[-3000:]
    assert "etcd unreachable" not in text and "Traceback" not in text, text[-3000:]
    assert "run-demo: stopping" in text, text[-2000:]
    assert "exiting" in text, "portico did not drain and exit by itself: " + text[-2000:]
    return rc, text


@pytest.fixture
def demo_ports():
    # The demo listens on fixed ports: under pytest-xdist the variants below would otherwise run at once on
    # two workers and find each other's ports taken. An exclusive lock serialises them across workers.
    with open("/tmp/portico-e2e-demo-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
        fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.mark.parametrize("how", ["sigint-to-make", "ctrl-c", "sigterm-to-make"])
def test_make_run_stops_cleanly(tmp_path, how, demo_ports):
    proc = start_make_run(tmp_path, "traditional")
    senders = {
        # kill -INT <make>: make keeps the signal to itself and waits for the script, which must notice.
        "sigint-to-make": lambda p: os.kill(p.pid, signal.SIGINT),
        # Ctrl-C: the whole foreground process group.
        "ctrl-c": lambda p: os.killpg(p.pid, signal.SIGINT),
        "sigterm-to-make": lambda p: os.kill(p.pid, signal.SIGTERM),
    }
    rc, text = stop_make_run(tmp_path, proc, senders[how])
    # make re-raises the signal it got once its child is done; the script itself exited 0 (no "Error NNN").
    assert rc in (0, -signal.SIGINT, -signal.SIGTERM), (rc, text[-2000:])

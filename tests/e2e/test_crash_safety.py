"""Crash safety: SIGKILL orchd at random moments during a stream of writes;
after each restart every acknowledged write is there, with its content, and
revisions only go forward."""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time

from helpers import Orchd, cm_path, current_revision, get_json, split_url

ROUNDS = 30
WRITERS = 2


class Writer(threading.Thread):
    """Creates and updates configmaps in a tight loop on one keep-alive
    connection until the server goes away. Writer k owns the names with
    `-w{k}-` in them, so only it changes them and it knows their
    resourceVersions."""

    def __init__(self, url: str, k: int, rnd: int, owned: dict[str, tuple[dict, int]], seed: int):
        super().__init__(daemon=True)
        self.url, self.k, self.rnd = url, k, rnd
        self.owned = dict(owned)  # name -> (data, resourceVersion) of its last acknowledged write
        self.rng = random.Random(seed)
        self.acked: list[tuple[str, dict, int]] = []  # (name, data, rv) in acknowledgement order
        self.pending: tuple[str, dict, bool] | None = None  # (name, data, is_create) of an unanswered write
        self.errors: list[str] = []

    def run(self):
        host, port = split_url(self.url)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        i = 0
        while True:
            i += 1
            data = {"writer": str(self.k), "round": str(self.rnd), "seq": str(i), "token": f"{self.rng.random():.12f}"}
            if self.owned and self.rng.random() < 0.5:
                name = self.rng.choice(sorted(self.owned))
                rv = self.owned[name][1]
                body = {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "resourceVersion": str(rv)}, "data": data}
                method, path, want, create = "PUT", cm_path(name=name), 200, False
            else:
                name = f"c-w{self.k}-r{self.rnd}-{i}"
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
                method, path, want, create = "POST", cm_path(), 201, True
            self.pending = (name, data, create)
            try:
                conn.request(method, path, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException):
                return  # the server died: this write may or may not have happened
            if resp.status != want:
                self.errors.append(f"{method} {path}: {resp.status} {payload[:500]!r}")
                self.pending = None
                return
            obj = json.loads(payload)
            rv = int(obj["metadata"]["resourceVersion"])
            if obj.get("data") != data:
                self.errors.append(f"{method} {name}: answer has data {obj.get('data')}, sent {data}")
            if self.acked and rv <= self.acked[-1][2]:
                self.errors.append(f"{method} {name}: resourceVersion {rv} after {self.acked[-1][2]}")
            self.acked.append((name, data, rv))
            self.owned[name] = (data, rv)
            self.pending = None


def list_all(url: str) -> tuple[dict[str, tuple[dict, int]], int]:
    lst = get_json(url, cm_path())
    objs = {i["metadata"]["name"]: (i.get("data") or {}, int(i["metadata"]["resourceVersion"])) for i in lst["items"]}
    return objs, int(lst["metadata"]["resourceVersion"])


def test_acknowledged_writes_survive_sigkill(tmp_path):
    seed = int(os.environ.get("ORCHD_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"seed {seed} (ORCHD_CRASH_SEED to repeat)")
    data_dir = tmp_path / "data"
    expected: dict[str, tuple[dict, int]] = {}  # name -> (data, rv): the state all acknowledged writes imply
    pending: list[tuple[str, dict, bool]] = []  # writes cut off by the kill: may or may not be there
    max_acked = 0
    total_acked = 0
    log = ""

    for rnd in range(ROUNDS):
        o = Orchd(data_dir).start()
        log = o.log()
        try:
            # 1. Everything acknowledged before the crash is there.
            actual, list_rv = list_all(o.url)
            undecided = {name: (data, create) for name, data, create in pending}
            for name, (data, rv) in expected.items():
                assert name in actual, f"round {rnd}: acknowledged {name} (rv {rv}) is missing (seed {seed})"
                got_data, got_rv = actual[name]
                if name in undecided and got_rv != rv:
                    assert got_data == undecided[name][0] and got_rv > rv, (
                        f"round {rnd}: {name} is {got_data}@{got_rv}, neither the acknowledged {data}@{rv} "
                        f"nor the unanswered write {undecided[name][0]} (seed {seed})")
                else:
                    assert (got_data, got_rv) == (data, rv), (
                        f"round {rnd}: {name} is {got_data}@{got_rv}, acknowledged {data}@{rv} (seed {seed})")
            for name in actual.keys() - expected.keys():
                assert name in undecided and undecided[name][1] and actual[name][0] == undecided[name][0], (
                    f"round {rnd}: {name} = {actual[name]} was never written (seed {seed})")
            # 2. Revisions only go forward.
            assert list_rv >= max_acked, f"round {rnd}: store revision {list_rv} < acknowledged {max_acked}"
            assert all(rv <= list_rv for _, rv in actual.values())
            probe = _create(o.url, f"probe-{rnd}")
            assert probe > max_acked and probe > list_rv, (
                f"round {rnd}: new write got revision {probe}, acknowledged up to {max_acked}, list at {list_rv}")
            expected = dict(actual)
            expected[f"probe-{rnd}"] = ({"round": str(rnd)}, probe)
            max_acked = probe
            pending = []

            # 3. Write in a tight loop and kill at a random moment.
            writers = [
                Writer(o.url, k, rnd, {n: v for n, v in expected.items() if f"-w{k}-" in n}, rng.randrange(1 << 30))
                for k in range(WRITERS)
            ]
            for w in writers:
                w.start()
            time.sleep(rng.uniform(0.02, 0.3))
            o.kill()
            for w in writers:
                w.join(timeout=30)
                assert not w.is_alive(), "a writer hung after the kill"
                assert not w.errors, f"round {rnd}, writer {w.k}: {w.errors}"
                for name, data, rv in w.acked:
                    expected[name] = (data, rv)
                    max_acked = max(max_acked, rv)
                total_acked += len(w.acked)
                if w.pending:
                    pending.append(w.pending)
        finally:
            if o.proc.poll() is None:
                o.kill()

    assert total_acked >= 10 * ROUNDS, f"only {total_acked} writes were acknowledged in {ROUNDS} rounds"

    # A last start, then a clean stop and start: nothing lost either way.
    for clean in (False, True):
        o = Orchd(data_dir).start()
        try:
            actual, list_rv = list_all(o.url)
            for name, (data, rv) in expected.items():
                if any(p[0] == name for p in pending):
                    assert name in actual
                else:
                    assert actual.get(name) == (data, rv), f"{name}: {actual.get(name)} != {(data, rv)}"
            assert current_revision(o.url) >= max_acked
            expected = actual
            pending = []
        finally:
            code = o.stop()
        assert code == 0, f"orchd exited {code} on SIGTERM:\n{o.log()}"
    print(f"{total_acked} acknowledged writes over {ROUNDS} SIGKILL rounds; last start log:\n{log}")


def _create(url: str, name: str) -> int:
    host, port = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"round": name[6:]}}
        conn.request("POST", cm_path(), body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        assert resp.status == 201, payload
        return int(json.loads(payload)["metadata"]["resourceVersion"])
    finally:
        conn.close()


def test_a_closed_stdout_does_not_crash_orchd(tmp_path):
    """Whatever read orchd's output may go away (`orchd up | head`, a
    closed terminal): orchd keeps serving and still stops cleanly, where a
    plain println! would panic on the broken pipe."""
    import signal
    import subprocess

    from helpers import orchd_bin, request

    proc = subprocess.Popen([orchd_bin(), "up", "--no-node", "--data-dir", str(tmp_path / "d"),
                             "--listen", "127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            assert line, f"orchd exited ({proc.wait()}): {proc.stderr.read().decode()}"
            if line.startswith("orchd: API serving on "):
                url = line.split()[4]
        assert url, "orchd never said where it serves"
        proc.stdout.close()  # nobody reads orchd's output any more
        assert request(url, "GET", "/readyz", timeout=5).status == 200
        # Shutting down prints; that must not panic.
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        stderr = proc.stderr.read().decode()
        assert "panicked" not in stderr, stderr
        assert code == 0, f"exit {code}: {stderr}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

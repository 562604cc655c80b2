"""Concurrency: several writers and several raw-HTTP watchers at once,
started at different resourceVersions. Every watcher sees every committed
write exactly once, in revision order, and watchers agree on history.
Repeated with random seeds (a property test over schedules)."""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time

from helpers import cm_path, split_url

ITERATIONS = 4
WRITERS = 6
OPS_PER_WRITER = 60
EARLY_WATCHERS = 4
SENTINEL = "zz-end"


class Watcher(threading.Thread):
    """A raw watch stream from `start_rv`, read until the sentinel object appears."""

    def __init__(self, url: str, ns: str, start_rv: int):
        super().__init__(daemon=True)
        self.url, self.ns, self.start_rv = url, ns, start_rv
        self.events: list[tuple[int, str, str, dict]] = []  # (rv, type, name, data)
        self.error: str | None = None
        self.ready = threading.Event()

    def run(self):
        host, port = split_url(self.url)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", f"{cm_path(self.ns)}?watch=1&resourceVersion={self.start_rv}&timeoutSeconds=120",
                         headers={"Accept": "application/json"})
            resp = conn.getresponse()
            self.ready.set()
            if resp.status != 200:
                self.error = f"watch answered {resp.status}: {resp.read()[:500]!r}"
                return
            while True:
                line = resp.readline()
                if not line:
                    self.error = f"stream ended before the sentinel after {len(self.events)} events"
                    return
                if not line.strip():
                    continue
                ev = json.loads(line)
                obj = ev["object"]
                if ev["type"] == "ERROR":
                    self.error = f"ERROR event: {obj}"
                    return
                if ev["type"] == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                self.events.append((int(obj["metadata"]["resourceVersion"]), ev["type"], name, obj.get("data") or {}))
                if name == SENTINEL:
                    return
        except Exception as e:  # reported by the test
            self.error = f"{type(e).__name__}: {e} after {len(self.events)} events"
        finally:
            self.ready.set()
            conn.close()


class Writer(threading.Thread):
    """Creates, updates (PUT with resourceVersion, or merge patch) and deletes its own configmaps."""

    def __init__(self, url: str, ns: str, k: int, seed: int):
        super().__init__(daemon=True)
        self.url, self.ns, self.k = url, ns, k
        self.rng = random.Random(seed)
        self.ops: list[tuple[str, str, dict, int | None]] = []  # (type, name, data, rv or None for deletes)
        self.errors: list[str] = []

    def send(self, conn, method, path, body, content_type="application/json"):
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers={"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()

    def run(self):
        host, port = split_url(self.url)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        live: dict[str, int] = {}
        try:
            for i in range(OPS_PER_WRITER):
                data = {"w": str(self.k), "i": str(i)}
                roll = self.rng.random()
                if not live or roll < 0.4:
                    name = f"w{self.k}-{i}"
                    status, body = self.send(conn, "POST", cm_path(self.ns),
                                             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
                    kind, want = "ADDED", 201
                elif roll < 0.6:
                    name = self.rng.choice(sorted(live))
                    status, body = self.send(conn, "PUT", cm_path(self.ns, name),
                                             {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": name, "resourceVersion": str(live[name])}, "data": data})
                    kind, want = "MODIFIED", 200
                elif roll < 0.85:
                    name = self.rng.choice(sorted(live))
                    status, body = self.send(conn, "PATCH", cm_path(self.ns, name), {"data": data},
                                             "application/merge-patch+json")
                    kind, want = "MODIFIED", 200
                else:
                    name = self.rng.choice(sorted(live))
                    status, body = self.send(conn, "DELETE", cm_path(self.ns, name), None)
                    kind, want = "DELETED", 200
                if status not in (want, 202 if kind == "DELETED" else want):
                    self.errors.append(f"{kind} {name}: {status} {body[:300]!r}")
                    return
                if kind == "DELETED":
                    live.pop(name)
                    self.ops.append((kind, name, {}, None))
                else:
                    obj = json.loads(body)
                    rv = int(obj["metadata"]["resourceVersion"])
                    live[name] = rv
                    self.ops.append((kind, name, obj.get("data") or {}, rv))
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            conn.close()


def create(url, ns, name) -> int:
    host, port = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", cm_path(ns), body=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}}).encode(),
            headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 201, body
        return int(json.loads(body)["metadata"]["resourceVersion"])
    finally:
        conn.close()


def run_iteration(cluster, it: int, seed: int):
    rng = random.Random(seed)
    ns = f"prop-{it}"
    r = cluster.http("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert r.status == 201, r
    base = create(cluster.url, ns, "base")

    watchers = [Watcher(cluster.url, ns, base) for _ in range(EARLY_WATCHERS)]
    for w in watchers:
        w.start()
    for w in watchers:
        w.ready.wait(10)
    writers = [Writer(cluster.url, ns, k, rng.randrange(1 << 30)) for k in range(WRITERS)]
    for w in writers:
        w.start()

    # More watchers join mid-stream, from the revision of a write already acknowledged.
    total = WRITERS * OPS_PER_WRITER
    for fraction in (0.2, 0.4, 0.6, 0.8):
        deadline = time.monotonic() + 60
        while sum(len(w.ops) for w in writers) < fraction * total and any(w.is_alive() for w in writers):
            assert time.monotonic() < deadline
            time.sleep(0.002)
        acked = [op[3] for w in writers for op in list(w.ops) if op[3] is not None]
        start = rng.choice(acked) if acked else base
        late = Watcher(cluster.url, ns, start)
        late.start()
        watchers.append(late)

    for w in writers:
        w.join(60)
        assert not w.is_alive(), "writer hung"
        assert not w.errors, w.errors
    end = create(cluster.url, ns, SENTINEL)
    # One more watcher replays the whole history after the fact.
    replay = Watcher(cluster.url, ns, base)
    replay.start()
    watchers.append(replay)
    for w in watchers:
        w.join(60)
        assert not w.is_alive(), f"watcher from {w.start_rv} hung with {len(w.events)} events"
        assert w.error is None, f"watcher from {w.start_rv}: {w.error}"

    ops = [op for w in writers for op in w.ops]
    written = {op[3]: op for op in ops if op[3] is not None}  # rv -> create/update
    deleted = sorted(op[1] for op in ops if op[0] == "DELETED")
    assert len(written) == len([op for op in ops if op[3] is not None]), "two writes got the same resourceVersion"

    reference = watchers[0].events
    revs = [e[0] for e in reference]
    assert revs == sorted(set(revs)), f"watcher 0: revisions out of order or repeated: {revs}"
    assert revs[-1] == end and reference[-1][2] == SENTINEL
    body = reference[:-1]
    assert len(body) == len(ops), f"watcher 0 saw {len(body)} events for {len(ops)} writes"
    seen_writes = {e[0]: e for e in body if e[1] != "DELETED"}
    assert set(seen_writes) == set(written), "watcher 0 saw other writes than were acknowledged"
    for rv, (kind, name, data, _) in written.items():
        assert seen_writes[rv][1:] == (kind, name, data), f"rv {rv}: saw {seen_writes[rv]}, wrote {(kind, name, data)}"
    assert sorted(e[2] for e in body if e[1] == "DELETED") == deleted
    last_write: dict[str, int] = {}
    for rv, kind, name, _ in body:  # a DELETED comes after the object's every write
        if kind == "DELETED":
            assert rv > last_write[name]
        last_write[name] = rv

    for w in watchers[1:]:
        want = [e for e in reference if e[0] > w.start_rv]
        assert w.events == want, (
            f"watcher from {w.start_rv} saw {len(w.events)} events, expected {len(want)}; "
            f"first difference at {next((i for i, (a, b) in enumerate(zip(w.events, want)) if a != b), None)}")


def test_writers_and_watchers_agree(cluster):
    seed = int(os.environ.get("ORCHD_CONCURRENCY_SEED", time.time_ns() % 1_000_000))
    print(f"seed {seed} (ORCHD_CONCURRENCY_SEED to repeat)")
    for it in range(ITERATIONS):
        run_iteration(cluster, it, seed + it)

"""Shared helpers of the end-to-end suite: starting and stopping `orchd`,
raw HTTP against its API, and running the real kubectl against it."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import yaml

#: How long a started orchd may take to answer /readyz (debug build, busy CI).
READY_TIMEOUT = 30.0


def orchd_bin() -> str:
    """The orchd binary under test (`cargo xtask test` sets ORCHD_BIN)."""
    env = os.environ.get("ORCHD_BIN")
    if env:
        return env
    root = Path(__file__).resolve().parents[2]
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return str(target / "debug" / "orchd")


class Response:
    """A whole HTTP response."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def warnings(self) -> list[str]:
        return self.headers.get_all("Warning") or []

    def __repr__(self) -> str:
        text = self.body[:2000].decode("utf-8", "replace")
        return f"<HTTP {self.status} {text}>"


def split_url(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname in ("127.0.0.1", "localhost", "::1"), f"tests talk to loopback only, not {url}"
    return parsed.hostname, parsed.port or 80


def request(url: str, method: str, path: str, body=None, headers: dict | None = None,
            content_type: str | None = "application/json", timeout: float = 30.0,
            conn: http.client.HTTPConnection | None = None) -> Response:
    """One HTTP request. `body` may be bytes, str, or something JSON-encodable.
    Pass `conn` to reuse a keep-alive connection."""
    host, port = split_url(url)
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        if content_type is not None:
            hdrs.setdefault("Content-Type", content_type)
    hdrs.setdefault("Accept", "application/json")
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        if own:
            conn.close()


def get_json(url: str, path: str):
    r = request(url, "GET", path)
    assert r.status == 200, f"GET {path}: {r!r}"
    return r.json()


def cm_path(ns: str = "default", name: str | None = None) -> str:
    p = f"/api/v1/namespaces/{ns}/configmaps"
    return p if name is None else f"{p}/{name}"


def configmap(name: str, data: dict | None = None, labels: dict | None = None, ns: str | None = None) -> dict:
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def current_revision(url: str) -> int:
    """The store's current revision, as the resourceVersion of a list."""
    return int(get_json(url, "/api/v1/configmaps?limit=1")["metadata"]["resourceVersion"])


class Orchd:
    """One `orchd up` (or `orchd server`) process on a free loopback port."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None, command: str = "up",
                 node: bool = False):
        self.command = command
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args or [])
        # Most tests count nodes or check scheduling spread over hollow
        # nodes only: the in-process node agent runs only when asked for
        # (tests/e2e/test_node_wasm.py).
        if command == "up" and not node and "--no-node" not in self.extra_args:
            self.extra_args.append("--no-node")
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.log_lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self) -> "Orchd":
        """Starts orchd (port 0: the kernel picks a free port, orchd prints
        it) and waits for /readyz."""
        cmd = [orchd_bin(), self.command, "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0", *self.extra_args]
        self.log_lines.append(f"$ {' '.join(cmd)}")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines: queue.Queue = queue.Queue()

        def pump(stream, log, q):
            for line in stream:
                log.append(line.rstrip("\n"))
                q.put(line)
            q.put(None)

        self._reader = threading.Thread(target=pump, args=(self.proc.stdout, self.log_lines, lines), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_TIMEOUT
        prefix = "orchd: API serving on "
        while self.url is None:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"orchd printed no '{prefix}' line in {READY_TIMEOUT} s:\n{self.log()}")
            if line is None:
                raise AssertionError(f"orchd exited ({self.proc.wait()}) before serving:\n{self.log()}")
            if line.startswith(prefix):
                self.url = line[len(prefix):].split()[0].strip()
        split_url(self.url)
        while True:
            try:
                if request(self.url, "GET", "/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"orchd exited ({self.proc.returncode}) before /readyz:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"orchd not ready within {READY_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        return "\n".join(self.log_lines)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait: returns the exit code (0 for a clean stop)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"orchd did not stop within {timeout} s of SIGTERM:\n{self.log()}")
        if self._reader:
            self._reader.join(timeout=5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self._reader:
            self._reader.join(timeout=5)


class Cluster:
    """What the `cluster` fixture yields; unpacks to (url, kubeconfig)."""

    def __init__(self, orchd: Orchd, tmp: Path):
        self.orchd = orchd
        self.url: str = orchd.url  # type: ignore[assignment]
        self.kubeconfig: Path = orchd.kubeconfig
        self.tmp = tmp
        self.cache_dir = tmp / "kube-cache"

    def __iter__(self):
        return iter((self.url, self.kubeconfig))

    # --- raw HTTP -------------------------------------------------------
    def http(self, method: str, path: str, body=None, **kw) -> Response:
        return request(self.url, method, path, body, **kw)

    def get(self, path: str):
        return get_json(self.url, path)

    def status_of(self, path: str) -> int:
        return request(self.url, "GET", path).status

    def create(self, path: str, obj) -> dict:
        r = request(self.url, "POST", path, obj)
        assert r.status == 201, f"POST {path}: {r!r}"
        return r.json()

    # --- kubectl --------------------------------------------------------
    def kubectl_cmd(self, *args: str) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Runs the real kubectl; with `check`, fails the test on a non-zero exit."""
        cmd = self.kubectl_cmd(*args)
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env["HOME"] = str(self.tmp)  # no stray ~/.kube state
        try:
            p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"kubectl {' '.join(args)} did not finish in {timeout} s\n"
                                 f"stdout: {e.stdout}\nstderr: {e.stderr}")
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {p.returncode}\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def kubectl_json(self, *args: str):
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def kubectl_apply_text(self, text: str, *args: str) -> subprocess.CompletedProcess:
        path = self.tmp / f"manifest-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        return self.kubectl("apply", "-f", str(path), *args)


def table_rows(output: str) -> list[list[str]]:
    """kubectl's table output as rows of whitespace-separated cells."""
    return [line.split() for line in output.strip().splitlines() if line.strip()]


def load_yaml(text: str):
    return yaml.safe_load(text)


# --- plugins and hollow nodes --------------------------------------------

def plugins_dir() -> Path:
    """Plugin components built for the tests (`cargo xtask test` builds them
    into <target>/e2e-plugins and sets ORCHD_TEST_PLUGINS)."""
    env = os.environ.get("ORCHD_TEST_PLUGINS")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("CARGO_TARGET_DIR", root / "target")) / "e2e-plugins"


def plugin_path(file: str) -> Path:
    path = plugins_dir() / file
    assert path.is_file(), f"no plugin component {path}: run `cargo xtask test`, which builds it"
    return path


def run_orchd(cluster: "Cluster", *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Runs an `orchd` client command (plugin, get, ...) against `cluster`."""
    cmd = [orchd_bin(), *args, "--server", cluster.url, "--data-dir", str(cluster.orchd.data_dir)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


class HollowNodes:
    """One `orchd sim nodes` process: hollow nodes that heartbeat and mark
    their pods Running. Stopped with SIGTERM."""

    def __init__(self, url: str, count: int, *args: str):
        self.cmd = [orchd_bin(), "sim", "nodes", "--count", str(count), "--server", url, *args]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if "registered" in line:
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        if not ready.wait(READY_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"hollow nodes did not register:\n{self.log()}")

    def log(self) -> str:
        return "\n".join([f"$ {' '.join(self.cmd)}", *self.lines])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


def wait_until(what: str, check, timeout: float = 30.0, interval: float = 0.05):
    """Polls `check()` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class PodWatch:
    """Follows the pods matching a label selector: a list, then a watch
    from its resourceVersion on a thread of its own. `on_listed` sees the
    listed pods, `on_event(kind, pod)` every later ADDED / MODIFIED /
    DELETED, both under `self.lock`; subclasses record what their test
    checks. An ERROR event lands in `self.errors` and ends the watch.
    Call `close()` when done."""

    PODS = "/api/v1/namespaces/default/pods"

    def __init__(self, c: Cluster, selector: str):
        q = urllib.parse.quote(selector)
        listed = c.get(f"{self.PODS}?labelSelector={q}")
        self.lock = threading.Lock()
        self.errors: list[str] = []
        with self.lock:
            self.on_listed(listed["items"])
        host, port = split_url(c.url)
        self.conn = http.client.HTTPConnection(host, port, timeout=300)
        rv = listed["metadata"]["resourceVersion"]
        self.conn.request("GET", f"{self.PODS}?watch=1&labelSelector={q}&resourceVersion={rv}")
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def on_listed(self, pods: list[dict]) -> None:
        pass

    def on_event(self, kind: str, pod: dict) -> None:
        pass

    def _run(self):
        try:
            for line in self.resp:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    self.errors.append(str(obj))
                    return
                if kind == "BOOKMARK":
                    continue
                with self.lock:
                    self.on_event(kind, obj)
        except (OSError, ValueError, http.client.HTTPException):
            # close() shut the connection: the watch ends there.
            pass

    def close(self):
        # Shut the socket down first and let the reader end by itself: it
        # holds the response's buffer lock while it waits for a line, and a
        # plain close would wait for the next event.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=10)
        self.conn.close()

"""Real Linux containers: `orchd up --runtime containerd=SOCKET` against a
containerd (Debian's, with runc) that this suite starts on its own socket,
root and state dirs under the target dir. The busybox image is built from
Debian's busybox-static with `orchd image build-busybox` and imported with
`orchd image import`. Pods run, log, crash and back off, are OOM-killed,
answer on their pod IP from the host, and leave nothing behind.

Nothing here is skipped: without a working containerd the tests fail and
say why."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import Cluster, Orchd, orchd_bin, plugin_path, run_orchd, table_rows, wait_until

NODE = "ctrd-node"
ROOT = Path(__file__).resolve().parents[2]


def containerd_dir() -> Path:
    env = os.environ.get("ORCHD_CONTAINERD_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "e2e-containerd"


class Containerd:
    """A containerd of our own: socket, root and state under `dir`."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.socket = directory / "containerd.sock"
        self.log_path = directory / "containerd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Containerd":
        for tool in ("containerd", "runc", "ctr"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not installed: `cargo xtask test` installs containerd and runc with apt")
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "config.toml"
        # Only what orchd uses: no CRI plugin (orchd is the kubelet), no
        # debug or metrics listeners.
        config.write_text(f"""version = 2
root = "{self.dir / 'root'}"
state = "{self.dir / 'state'}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
""")
        self.logfile = open(self.log_path, "w")
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"containerd exited ({self.proc.returncode}):\n{self.log()}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        pytest.fail(f"containerd did not answer on {self.socket} in 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-5000:] if self.log_path.exists() else ""

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "orchd", *args],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()


@pytest.fixture(scope="module")
def containerd():
    """containerd started for this module, with busybox:latest imported."""
    c = Containerd(containerd_dir()).start()
    try:
        tar = c.dir / "busybox.tar"
        built = subprocess.run([orchd_bin(), "image", "build-busybox", str(tar)], capture_output=True, text=True,
                               timeout=120)
        assert built.returncode == 0, built
        imported = subprocess.run([orchd_bin(), "image", "import", str(tar), "--address", str(c.socket)],
                                  capture_output=True, text=True, timeout=120)
        assert imported.returncode == 0, imported
        assert "imported docker.io/library/busybox:latest" in imported.stdout, imported.stdout
        assert "docker.io/library/busybox:latest" in c.ctr("images", "ls", "-q").stdout
        yield c
    finally:
        c.stop()


def mounts_under(*dirs: Path) -> list[str]:
    """Mount points below any of `dirs` (/proc/self/mountinfo's 5th field)."""
    prefixes = [str(d.resolve()) + "/" for d in dirs]
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if any(p.startswith(pre) for pre in prefixes)]


def leftovers(ctrd: Containerd, data_dir: Path) -> dict:
    """What pods may leave behind: containerd containers, tasks and leases,
    snapshots other than the image's layers, network namespaces, pod
    cgroups, mounts (rootfs under containerd's state, netns bind mounts
    under the node's data dir)."""
    return {
        "mounts": mounts_under(data_dir, ctrd.dir / "state"),
        "containers": ctrd.ctr("containers", "ls", "-q").stdout.split(),
        "tasks": [line for line in ctrd.ctr("tasks", "ls").stdout.splitlines()[1:] if line.strip()],
        "active snapshots": [r for r in table_rows(ctrd.ctr("snapshots", "ls").stdout)[1:] if "Committed" not in r],
        # A lease held while a container is made must end with the making.
        "leases": ctrd.ctr("leases", "ls", "-q").stdout.split(),
        "netns": os.listdir(data_dir / "run" / "netns") if (data_dir / "run" / "netns").exists() else [],
        "pod cgroups": [d for pattern in ("/sys/fs/cgroup/*/orchd/pod*", "/sys/fs/cgroup/*/orchd/*/pod*",
                                          "/sys/fs/cgroup/orchd/pod*", "/sys/fs/cgroup/orchd/*/pod*")
                        for d in glob.glob(pattern)],
        "ip allocations": [f for f in glob.glob(str(data_dir / "run" / "cni-ipam" / "orchd" / "10.*"))],
    }


def nothing_left(ctrd: Containerd, data_dir: Path) -> dict:
    left = leftovers(ctrd, data_dir)
    return {k: v for k, v in left.items() if v}


@pytest.fixture
def cluster(tmp_path, containerd):
    """`orchd up --runtime containerd=SOCKET --default-runtime runc` with its
    node agent; checks on stop that nothing was left in containerd, the
    network or the cgroups."""
    o = Orchd(tmp_path / "data", ["--node-name", NODE, "--runtime", f"containerd={containerd.socket}",
                                  "--default-runtime", "runc"], node=True).start()
    c = Cluster(o, tmp_path)
    c.ctrd = containerd
    try:
        yield c
    finally:
        code = o.stop(timeout=30)
        print(o.log())
    assert code == 0, f"orchd exited {code} on SIGTERM:\n{o.log()}"
    left = nothing_left(containerd, o.data_dir)
    assert not left, f"left behind after orchd stopped: {left}"
    # With its last pod gone, the node's bridge goes too (unless another
    # node on this machine still has pods on it).
    assert not bridge_exists("orchd0"), "the bridge orchd0 outlived the node agent"


def bridge_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def manifest(name: str, command: list[str], policy: str = "Always", memory: str | None = None,
             runtime_class: str | None = None, image: str = "busybox") -> str:
    limits = f"\n      resources:\n        limits:\n          memory: {memory}" if memory else ""
    rc = f"\n  runtimeClassName: {runtime_class}" if runtime_class else ""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}{rc}
  containers:
    - name: main
      image: {image}
      command: {json.dumps(command)}{limits}
"""


def pod(c: Cluster, name: str) -> dict:
    return c.get(f"/api/v1/namespaces/default/pods/{name}")


def container_status(c: Cluster, name: str) -> dict:
    return (pod(c, name).get("status", {}).get("containerStatuses") or [{}])[0]


def wait_phase(c: Cluster, name: str, phase: str, timeout: float = 60.0) -> dict:
    return wait_until(f"pod {name} {phase}",
                      lambda: (p := pod(c, name)).get("status", {}).get("phase") == phase and p,
                      timeout=timeout, interval=0.2)


def events_of(c: Cluster, name: str) -> list[dict]:
    items = c.kubectl_json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return items


def test_a_busybox_pod_runs_and_its_output_shows_in_kubectl_logs(cluster):
    c = cluster
    node = wait_until("node registered", lambda: c.status_of(f"/api/v1/nodes/{NODE}") == 200 and
                      c.get(f"/api/v1/nodes/{NODE}"), timeout=30)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1."), node["status"]
    classes = {r["metadata"]["name"]: r["handler"] for r in c.kubectl_json("get", "runtimeclasses")["items"]}
    assert classes == {"wasm": "wasm", "runc": "runc"}, classes

    c.kubectl_apply_text(manifest("hello", ["sh", "-c", "for i in 1 2 3; do echo hello from runc $i; done; "
                                            "echo oops >&2; hostname; sleep 3600"]))
    p = wait_phase(c, "hello", "Running")
    assert p["status"]["podIP"].startswith("10.244.0."), p["status"]
    logs = wait_until("the pod's output", lambda: (o := c.kubectl("logs", "hello").stdout).count("\n") >= 5 and o,
                      timeout=30, interval=0.2)
    # stdout and stderr are two pipes: their lines interleave in any order.
    assert [line for line in logs.splitlines() if line != "oops"] == [
        "hello from runc 1", "hello from runc 2", "hello from runc 3", "hello"], logs
    assert "oops" in logs.splitlines(), logs
    stamped = c.kubectl("logs", "hello", "--timestamps").stdout.splitlines()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z .+", line) for line in stamped), stamped
    assert len(c.kubectl("logs", "hello", "--tail", "2").stdout.splitlines()) == 2
    # The container really is one: containerd runs its task, under the id
    # the status names.
    tasks = c.ctrd.ctr("tasks", "ls").stdout
    assert "RUNNING" in tasks, tasks
    cid = container_status(c, "hello")["containerID"]
    assert cid.startswith("containerd://"), cid
    assert c.ctrd.ctr("containers", "ls", "-q").stdout.split() == [cid.removeprefix("containerd://")]
    reasons = {e["reason"] for e in events_of(c, "hello")}
    assert "Started" in reasons, reasons


def test_a_crashing_container_restarts_with_growing_backoff(cluster):
    c = cluster
    c.kubectl_apply_text(manifest("crasher", ["sh", "-c", "echo crashing; exit 2"]))
    times: dict[int, float] = {}
    seen_backoff = False
    deadline = time.monotonic() + 60
    while 4 not in times and time.monotonic() < deadline:
        s = container_status(c, "crasher")
        count = s.get("restartCount", 0)
        if count and count not in times:
            times[count] = time.monotonic()
        if s.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            seen_backoff = True
        time.sleep(0.1)
    assert {2, 3, 4} <= set(times), times
    assert seen_backoff
    first_gap, second_gap = times[3] - times[2], times[4] - times[3]
    assert 8 < first_gap < 15 and 18 < second_gap < 25, times
    s = container_status(c, "crasher")
    assert s["lastState"]["terminated"]["exitCode"] == 2, s
    assert "crashing" in c.kubectl("logs", "crasher", "--previous").stdout
    assert "BackOff" in {e["reason"] for e in events_of(c, "crasher")}


def test_a_memory_limit_is_enforced_and_reported_oomkilled(cluster):
    c = cluster
    # 100 MB of 'a' into a shell variable under a 32 MiB limit.
    c.kubectl_apply_text(manifest("hog", ["sh", "-c", "echo start; x=$(head -c 100000000 /dev/zero | tr '\\0' a); "
                                          "echo survived"], policy="Never", memory="32Mi"))
    p = wait_phase(c, "hog", "Failed")
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137, term
    out = c.kubectl("logs", "hog").stdout
    assert "start" in out and "survived" not in out, out


def test_a_pods_ip_answers_from_the_host(cluster):
    c = cluster
    c.kubectl_apply_text(manifest("web", ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && "
                                          "exec httpd -f -p 8080 -h /www"]))
    p = wait_phase(c, "web", "Running")
    ip = p["status"]["podIP"]
    assert ip.startswith("10.244.0.") and p["status"]["podIPs"] == [{"ip": ip}], p["status"]

    def fetch():
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None
    assert wait_until("httpd answering on the pod IP", fetch, timeout=20, interval=0.2) == "web\n"


def test_a_deployment_reaches_ready_on_real_containers(cluster):
    c = cluster
    c.kubectl_apply_text("""apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleepers
spec:
  replicas: 3
  selector:
    matchLabels: {app: sleepers}
  template:
    metadata:
      labels: {app: sleepers}
    spec:
      runtimeClassName: runc
      containers:
        - name: main
          image: busybox
          command: ["sh", "-c", "echo up on $(hostname); exec sleep 3600"]
""")
    c.kubectl("rollout", "status", "deployment/sleepers", "--timeout=90s", timeout=120)
    pods = c.kubectl_json("get", "pods", "-l", "app=sleepers")["items"]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods), pods
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3 and all(ip.startswith("10.244.0.") for ip in ips), ips
    running = [line for line in c.ctrd.ctr("tasks", "ls").stdout.splitlines() if "RUNNING" in line]
    assert len(running) == 3, running
    out = wait_until("a replica's output", lambda: "up on sleepers-" in (o := c.kubectl("logs", "deployment/sleepers")
                                                                       .stdout) and o, timeout=30, interval=0.2)
    assert out.startswith("up on sleepers-"), out


def test_a_missing_image_gives_a_clear_reason_and_event(cluster):
    c = cluster
    c.kubectl_apply_text(manifest("ghost", ["true"], image="no-such-image:1.0"))
    w = wait_until("ErrImagePull", lambda: (s := container_status(c, "ghost").get("state", {}).get("waiting"))
                   and s.get("reason") == "ErrImagePull" and s, timeout=30, interval=0.2)
    assert "no-such-image:1.0" in w["message"] and "orchd image import" in w["message"], w
    assert pod(c, "ghost")["status"]["phase"] == "Pending"
    ghost_events = wait_until("a Failed event for ghost", lambda: [e for e in events_of(c, "ghost")
                                                                  if e["reason"] == "Failed"], timeout=20)
    assert ghost_events[0]["type"] == "Warning" and "Failed to pull image" in ghost_events[0]["message"], ghost_events


def test_a_command_that_cannot_start_is_a_start_error_then_crash_loop_backoff(cluster):
    """As the kubelet on containerd: the run is terminated with reason
    StartError, exit code 128 and runc's message, and restarted with
    backoff under restartPolicy Always; under Never the pod fails."""
    c = cluster
    c.kubectl_apply_text(manifest("typo", ["no-such-command", "--flag"]))
    # A directory is no executable: runc says "permission denied".
    c.kubectl_apply_text(manifest("notexec", ["/"], policy="Never"))
    s = wait_until("CrashLoopBackOff after a StartError",
                   lambda: (s := container_status(c, "typo")).get("state", {}).get("waiting", {}).get("reason")
                   == "CrashLoopBackOff" and s, timeout=30, interval=0.1)
    term = s["lastState"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128, s
    assert 'exec: "no-such-command": executable file not found in $PATH' in term["message"], term
    assert term["message"].startswith("failed to create containerd task: "), term
    assert s["restartCount"] >= 1 and "back-off 10s" in s["state"]["waiting"]["message"], s
    # Not running, but restarting: Running, as Kubernetes counts it.
    assert pod(c, "typo")["status"]["phase"] == "Running"
    # No half-made container stays behind a failed start (the next try is
    # 10 s away). containerd ids begin with the pod's uid; notexec's may
    # still be in the making.
    uid = pod(c, "typo")["metadata"]["uid"]
    assert [i for i in c.ctrd.ctr("containers", "ls", "-q").stdout.split() if i.startswith(uid)] == []
    failed = wait_until("a Failed event for typo", lambda: [e for e in events_of(c, "typo")
                                                           if e["reason"] == "Failed"], timeout=20)
    assert failed[0]["type"] == "Warning" and failed[0]["message"].startswith("Error: failed to create containerd task"), \
        failed
    assert "no-such-command" in failed[0]["message"], failed
    assert "BackOff" in {e["reason"] for e in events_of(c, "typo")}

    p = wait_phase(c, "notexec", "Failed", timeout=30)
    s = p["status"]["containerStatuses"][0]
    term = s["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128, s
    assert 'exec: "/": permission denied' in term["message"], term
    assert s["restartCount"] == 0, s


def test_a_memory_limit_too_small_to_start_is_a_start_error_with_runcs_message(cluster):
    """1 MiB is below what runc's init needs: the pod's cgroup gets the
    limit (empty, it takes it), then runc's init is OOM-killed in it
    ("container init was OOM-killed (memory limit too low?)"; without a
    pod-level limit, cgroup v1 refused runc's own write with "unable to set
    memory limit to 1048576 (current usage: ..."). The process never
    starts."""
    c = cluster
    c.kubectl_apply_text(manifest("tiny", ["sh", "-c", "echo never"], policy="Never", memory="1Mi"))
    p = wait_phase(c, "tiny", "Failed", timeout=30)
    s = p["status"]["containerStatuses"][0]
    term = s["state"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128, s
    assert "memory limit" in term["message"], term
    failed = wait_until("a Failed event", lambda: [e for e in events_of(c, "tiny") if e["reason"] == "Failed"],
                        timeout=20)
    assert failed[0]["type"] == "Warning" and term["message"] in failed[0]["message"], failed
    # Its sandbox went with its only container: no cgroup, netns, address
    # or containerd container left, though the pod is still there.
    wait_until("nothing left behind", lambda: not nothing_left(c.ctrd, c.orchd.data_dir), timeout=30, interval=0.2)
    c.kubectl("delete", "pod", "tiny", timeout=60)
    assert not nothing_left(c.ctrd, c.orchd.data_dir)


def test_a_cgroup_write_the_kernel_refuses_fails_the_sandbox_with_its_message(cluster):
    """cgroup v1 refuses a CPU quota above the parent's (EINVAL): with the
    burstable QoS cgroup capped at 0.1 CPU, a Burstable pod limited to
    0.5 CPU cannot get its cgroup. It stays Pending with the kernel's
    message in FailedCreatePodSandBox events, nothing half made is left,
    and it starts once the cap is lifted."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        pytest.skip("needs cgroup v1's parent quota check (this machine mounts v2)")
    cpu = next(Path(r) for r in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")
               if Path(r, "cpu.shares").exists())
    parent = cpu / "orchd" / "burstable"
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "cpu.cfs_quota_us").write_text("10000")
    c = cluster
    try:
        c.kubectl_apply_text("""apiVersion: v1
kind: Pod
metadata: {name: capped}
spec:
  containers:
    - name: a
      image: busybox
      command: ["sleep", "3600"]
      resources: {requests: {cpu: 100m}, limits: {cpu: 500m}}
""")
        events = wait_until("FailedCreatePodSandBox", lambda: [
            e for e in events_of(c, "capped") if e["reason"] == "FailedCreatePodSandBox"], timeout=30)
        message = events[0]["message"]
        assert events[0]["type"] == "Warning", events[0]
        assert "cannot write \"50000\"" in message and "cpu.cfs_quota_us" in message, message
        assert "Invalid argument" in message, message
        p = pod(c, "capped")
        assert p["status"]["phase"] == "Pending", p["status"]
        uid = p["metadata"]["uid"]
        assert not glob.glob(f"/sys/fs/cgroup/*/orchd/burstable/pod{uid}"), "a half-made pod cgroup was left"
        assert not c.ctrd.ctr("containers", "ls", "-q").stdout.split()
    finally:
        (parent / "cpu.cfs_quota_us").write_text("-1")
    wait_phase(c, "capped", "Running", timeout=60)
    c.kubectl("delete", "pod", "capped", "--grace-period=0", "--force")


def test_a_missing_runtime_class_fails_the_pod(cluster):
    c = cluster
    c.kubectl_apply_text(manifest("classless", ["true"], runtime_class="gvisor"))
    p = wait_phase(c, "classless", "Failed", timeout=30)
    assert p["status"]["reason"] == "RuntimeClassNotFound", p["status"]
    assert 'RuntimeClass "gvisor" not found' in p["status"]["message"]
    assert "RuntimeClassNotFound" in {e["reason"] for e in events_of(c, "classless")}


def test_deleted_pods_leave_no_containers_snapshots_netns_or_cgroups(cluster):
    c = cluster
    for i in range(3):
        c.kubectl_apply_text(manifest(f"short{i}", ["sleep", "3600"]))
    for i in range(3):
        wait_phase(c, f"short{i}", "Running")
    left = leftovers(c.ctrd, c.orchd.data_dir)
    assert len(left["containers"]) == 3 and len(left["netns"]) == 3 and len(left["ip allocations"]) == 3, left
    assert len([d for d in left["pod cgroups"] if "/memory/" in d or "/sys/fs/cgroup/orchd/" in d]) == 3, left
    # A rootfs and a network namespace each.
    assert len([m for m in left["mounts"] if m.endswith("/rootfs")]) == 3, left
    assert len([m for m in left["mounts"] if "/run/netns/" in m]) == 3, left
    c.kubectl("delete", "pods", "short0", "short1", "short2", "--wait=true", timeout=90)
    wait_until("nothing left behind", lambda: not nothing_left(c.ctrd, c.orchd.data_dir), timeout=30, interval=0.2)


def test_a_runtime_class_overhead_and_scheduling_are_added_at_admission(cluster):
    c = cluster
    c.kubectl_apply_text(f"""apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: runc-metered
handler: runc
overhead:
  podFixed: {{cpu: 100m, memory: 20Mi}}
scheduling:
  nodeSelector: {{kubernetes.io/hostname: {NODE}}}
""")
    c.kubectl_apply_text(manifest("metered", ["sleep", "3600"], runtime_class="runc-metered"))
    p = wait_phase(c, "metered", "Running")
    assert p["spec"]["overhead"] == {"cpu": "100m", "memory": "20Mi"}, p["spec"]
    assert p["spec"]["nodeSelector"] == {"kubernetes.io/hostname": NODE}, p["spec"]
    # Its handler is runc: a real task in containerd.
    assert any("RUNNING" in line for line in c.ctrd.ctr("tasks", "ls").stdout.splitlines())


def cgroup_file(parent: str, uid: str, controller: str, file: str) -> str | None:
    """A pod cgroup's file under its QoS parent (cgroup v1 hierarchy of
    `controller`, or the v2 unified one); None if it is not there."""
    rel = f"orchd/{parent + '/' if parent else ''}pod{uid}/{file}"
    for root in (f"/sys/fs/cgroup/{controller}", "/sys/fs/cgroup"):
        path = Path(root) / rel
        if path.exists():
            return path.read_text().strip()
    return None


def test_qos_classes_get_their_cgroups_and_pod_limits(cluster):
    """The node policy's pod-cgroup: Guaranteed pods directly under the
    node's root with the sum of their limits, Burstable under burstable
    (limited only when every container is), BestEffort under besteffort
    with the minimum CPU weight."""
    c = cluster
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    c.kubectl_apply_text("""apiVersion: v1
kind: Pod
metadata: {name: guaranteed}
spec:
  containers:
    - name: a
      image: busybox
      command: ["sleep", "3600"]
      resources: {limits: {cpu: 250m, memory: 48Mi}}
    - name: b
      image: busybox
      command: ["sleep", "3600"]
      resources: {limits: {cpu: 250m, memory: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: burstable}
spec:
  containers:
    - name: a
      image: busybox
      command: ["sleep", "3600"]
      resources: {requests: {cpu: 500m, memory: 8Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: besteffort}
spec:
  containers:
    - name: a
      image: busybox
      command: ["sleep", "3600"]
""")
    uids = {}
    for name in ("guaranteed", "burstable", "besteffort"):
        p = wait_phase(c, name, "Running")
        uids[name] = p["metadata"]["uid"]
    g, b, e = uids["guaranteed"], uids["burstable"], uids["besteffort"]
    if v2:
        assert cgroup_file("", g, "", "memory.max") == str(64 << 20)
        assert cgroup_file("", g, "", "cpu.max") == "50000 100000"
        assert cgroup_file("burstable", b, "", "memory.max") == "max"
        assert cgroup_file("besteffort", e, "", "cpu.weight") == "1"
    else:
        assert cgroup_file("", g, "memory", "memory.limit_in_bytes") == str(64 << 20)
        assert cgroup_file("", g, "cpu", "cpu.cfs_quota_us") == "50000"
        assert cgroup_file("", g, "cpu", "cpu.shares") == "512"
        assert cgroup_file("burstable", b, "cpu", "cpu.shares") == "512"
        assert int(cgroup_file("burstable", b, "memory", "memory.limit_in_bytes")) > 1 << 60
        assert cgroup_file("burstable", b, "cpu", "cpu.cfs_quota_us") == "-1"
        assert cgroup_file("besteffort", e, "cpu", "cpu.shares") == "2"
        # The containers' cgroups sit below their pod's.
        assert glob.glob(f"/sys/fs/cgroup/memory/orchd/besteffort/pod{e}/*/memory.limit_in_bytes")
    c.kubectl("delete", "pod", "guaranteed", "burstable", "besteffort", "--grace-period=0", "--force")
    wait_until("the pod cgroups removed", lambda: all(
        cgroup_file(parent, uid, "memory", "memory.stat" if not v2 else "cgroup.procs") is None
        for parent, uid in (("", g), ("burstable", b), ("besteffort", e))), timeout=30)


def test_a_node_policy_sees_the_pods_cgroups_and_network_only_with_the_grants(cluster):
    """The node policy's host calls on real containers: a build of the
    test node policy that logs, on each pressure check, what `runtime`,
    `cgroups` and `network` report per pod. With the three granted it
    sees the pod's cgroup under its QoS parent with its limit and the
    pod's IP and netns; with only `runtime` the other two are forbidden."""
    c = cluster
    install = ["plugin", "install", str(plugin_path("inspecting-node-policy.wasm")), "--name", "kubelet"]
    run_orchd(c, *install, "--host-calls", "runtime,cgroups,network")
    c.kubectl_apply_text("""apiVersion: v1
kind: Pod
metadata: {name: seen}
spec:
  containers:
    - name: a
      image: busybox
      command: ["sleep", "3600"]
      resources: {requests: {cpu: 100m}, limits: {memory: 64Mi}}
""")
    p = wait_phase(c, "seen", "Running")
    uid, ip = p["metadata"]["uid"], p["status"]["podIP"]

    def line_about(pod: str, must: str):
        return next((l for l in c.orchd.log_lines if f"inspect: pod default/{pod}:" in l and must in l), None)

    line = wait_until("the inspect line with the cgroup", lambda: line_about("seen", f"/orchd/burstable/pod{uid}"),
                      timeout=40)
    assert "qos Burstable handler runc" in line, line
    assert str(64 << 20) in line, line  # the pod cgroup's memory limit
    assert f'"{ip}"' in line and "netns: Some(" in line, line
    assert "Forbidden" not in line, line
    node = next(l for l in c.orchd.log_lines if "inspect: node:" in l)
    assert "V1" in node or "V2" in node, node
    assert "10.244.0.0/24" in node and "orchd0" in node, node

    run_orchd(c, *install, "--host-calls", "runtime")
    line = wait_until("the inspect line without the grants", lambda: line_about("seen", "Forbidden"), timeout=40)
    assert "may not call the node's cgroups" in line.replace("\\'", "'"), line
    assert "usage Ok(" in line, line
    c.kubectl("delete", "pod", "seen", "--grace-period=0", "--force")


def lifecycle_pod(name: str, script: str, container_extra: str = "", grace: int = 2) -> str:
    """A busybox pod running `sh -c script`, with `container_extra` (probe
    and hook YAML, indented for the container) added to its container."""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
    - name: main
      image: busybox
      command: ["sh", "-c", {json.dumps(script)}]
{container_extra}"""


def condition(p: dict, kind: str) -> str | None:
    return next((x["status"] for x in p.get("status", {}).get("conditions") or [] if x["type"] == kind), None)


def test_a_failing_liveness_probe_restarts_a_real_container(cluster):
    c = cluster
    # Healthy for 4 s, then the file the probe reads is gone.
    c.kubectl_apply_text(lifecycle_pod("sickly", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600",
                                       """      livenessProbe:
        exec: {command: [cat, /tmp/healthy]}
        periodSeconds: 1
        failureThreshold: 2
"""))
    s = wait_until("a restart", lambda: (s := container_status(c, "sickly")).get("restartCount", 0) >= 1 and s,
                   timeout=60, interval=0.2)
    # sleep as PID 1 ignores SIGTERM: killed when the grace period (2 s) ends.
    assert s["lastState"]["terminated"]["exitCode"] == 137, s
    unhealthy = [e for e in events_of(c, "sickly") if e["reason"] == "Unhealthy"]
    assert any(e["message"].startswith("Liveness probe failed: ") and "/tmp/healthy" in e["message"]
               and e["type"] == "Warning" for e in unhealthy), unhealthy
    killing = [e for e in events_of(c, "sickly") if e["reason"] == "Killing"]
    assert any("failed liveness probe, will be restarted" in e["message"] for e in killing), killing
    # The new run has a container of its own, which the status names once
    # it runs (until then, the ended run's).
    s = wait_until("the new run running", lambda: "running" in (s := container_status(c, "sickly"))["state"] and s,
                   timeout=30, interval=0.2)
    cid = s["containerID"].removeprefix("containerd://")
    assert c.ctrd.ctr("containers", "ls", "-q").stdout.split() == [cid], s
    # It is healthy again for 4 s, then restarted again.
    wait_until("a second restart", lambda: container_status(c, "sickly").get("restartCount", 0) >= 2, timeout=60)


def test_a_readiness_probe_gates_ready_on_a_real_container(cluster):
    c = cluster
    # httpd serves /www; the probe's page appears after 3 s.
    c.kubectl_apply_text(lifecycle_pod("gated", "mkdir -p /www; (sleep 3; echo ok > /www/ready.html) & "
                                       "exec httpd -f -p 8080 -h /www", """      readinessProbe:
        httpGet: {path: /ready.html, port: 8080}
        periodSeconds: 1
"""))
    p = wait_phase(c, "gated", "Running")
    assert condition(p, "Ready") == "False" and p["status"]["containerStatuses"][0]["ready"] is False, p["status"]
    p = wait_until("Ready", lambda: condition(p := pod(c, "gated"), "Ready") == "True" and p, timeout=30,
                   interval=0.2)
    assert condition(p, "ContainersReady") == "True" and p["status"]["containerStatuses"][0]["ready"] is True
    unhealthy = [e for e in events_of(c, "gated") if e["reason"] == "Unhealthy"]
    assert any(e["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 404" for e in unhealthy), \
        unhealthy
    # The page goes: not ready again, but not restarted.
    c.kubectl("exec", "gated", "--", "rm", "/www/ready.html")
    p = wait_until("NotReady again", lambda: condition(p := pod(c, "gated"), "Ready") == "False" and p, timeout=30,
                   interval=0.2)
    s = p["status"]["containerStatuses"][0]
    assert s["ready"] is False and s["restartCount"] == 0 and "running" in s["state"], s
    assert p["status"]["phase"] == "Running"


def test_delete_runs_pre_stop_then_sigterm_reaches_the_container(cluster):
    c = cluster
    # PID 1 is sh with a TERM trap; the PreStop hook writes to its stdout.
    c.kubectl_apply_text(lifecycle_pod(
        "stopper", "trap 'echo got TERM; sleep 2; exit 0' TERM; echo started; while true; do sleep 1; done",
        """      lifecycle:
        preStop:
          exec: {command: [sh, -c, "echo prestop ran > /proc/1/fd/1; sleep 2"]}
""", grace=30))
    wait_phase(c, "stopper", "Running")
    wait_until("started", lambda: "started" in c.kubectl("logs", "stopper").stdout, timeout=20, interval=0.2)
    begun = time.monotonic()
    c.kubectl("delete", "pod", "stopper", "--wait=false")
    p = pod(c, "stopper")
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30, p["metadata"]
    # While Terminating: the hook's line, then the trap's, in the log.
    logs = wait_until("PreStop then TERM in the logs",
                      lambda: "got TERM" in (o := c.kubectl("logs", "stopper", check=False).stdout) and o,
                      timeout=20, interval=0.2)
    lines = logs.splitlines()
    assert lines.index("started") < lines.index("prestop ran") < lines.index("got TERM"), lines
    # The trap exits 0 after 2 s: the pod goes long before its 30 s grace.
    wait_until("gone", lambda: c.status_of("/api/v1/namespaces/default/pods/stopper") == 404, timeout=30,
               interval=0.2)
    took = time.monotonic() - begun
    assert 3 <= took < 15, took
    reasons = [e["reason"] for e in events_of(c, "stopper")]
    assert "Killing" in reasons and "FailedPreStopHook" not in reasons, reasons


def test_two_nodes_on_one_machine_have_their_own_pod_cidrs_and_bridges(cluster, tmp_path):
    c = cluster
    other = Orchd(tmp_path / "other", ["--node-name", "ctrd-node2", "--runtime", f"containerd={c.ctrd.socket}",
                                       "--default-runtime", "runc", "--pod-cidr", "10.245.0.0/24"], node=True).start()
    try:
        (tmp_path / "other-client").mkdir()
        c2 = Cluster(other, tmp_path / "other-client")
        node = wait_until("node registered", lambda: c2.status_of("/api/v1/nodes/ctrd-node2") == 200 and
                          c2.get("/api/v1/nodes/ctrd-node2"), timeout=30)
        assert node["spec"]["podCIDR"] == "10.245.0.0/24", node["spec"]
        web = manifest("web", ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && "
                                           "exec httpd -f -p 8080 -h /www"])
        c.kubectl_apply_text(web)
        c2.kubectl_apply_text(web)
        ips = {}
        for name, cl in (("first", c), ("second", c2)):
            ips[name] = wait_phase(cl, "web", "Running")["status"]["podIP"]
        assert ips["first"].startswith("10.244.0.") and ips["second"].startswith("10.245.0."), ips
        assert bridge_exists("orchd0") and bridge_exists("orchd0af50000")

        def answers(ip):
            try:
                with urllib.request.urlopen(f"http://{ip}:8080/", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return None
        for ip in ips.values():
            assert wait_until(f"httpd on {ip}", lambda: answers(ip), timeout=20, interval=0.2) == "web\n"
    finally:
        code = other.stop(timeout=30)
        print(other.log())
    assert code == 0, other.log()
    # The second node left nothing; the first node's pod is all there is.
    left = leftovers(c.ctrd, other.data_dir)
    assert left["netns"] == [] and left["ip allocations"] == [], left
    assert len(left["containers"]) == 1 and len([d for d in left["pod cgroups"] if "/memory/" in d
                                                 or "/sys/fs/cgroup/orchd/" in d]) == 1, left
    # Its bridge went with it; the first node's pod is still on its own
    # and answers.
    assert not bridge_exists("orchd0af50000")
    assert bridge_exists("orchd0")
    assert answers(ips["first"]) == "web\n"

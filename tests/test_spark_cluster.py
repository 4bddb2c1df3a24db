"""`audit --engine spark --spark-master spark://…` against a real standalone cluster: a
master and two workers started on loopback from PySpark's own launch classes, each
worker running its own executor, stopped by their process ids. The placements and the
report equal DuckDB's on the same export; an audit that waits for executors says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SPARK_JIT, SPARK_SUBMIT, free_port
from tests.test_audit import (  # noqa: F401 (spark_ready: the fixture)
    audit_process,
    spark_kept_its_start_to_itself,
    spark_ready,
)

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-12-01T00:00:00Z"

pytestmark = pytest.mark.slow


def _wait_for(log: Path, text: str, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    pytest.fail(f"the cluster did not start ({text!r} not in {log}):\n{log.read_text()[-3000:]}")


@dataclass
class Cluster:
    url: str
    folder: Path
    """The workers' work folders are w0 and w1 in it."""
    workers: Callable[[], None]
    """Start the two workers, and wait until the master has them."""
    driver_only: Path | None
    """A folder the workers (and their executors) do not see: each has a folder of its
    own mounted there, as nodes of a real cluster have their own disks. None where this
    machine cannot give a process its own mounts (`unshare --mount`, as root)."""


@pytest.fixture(scope="module")
def cluster(spark_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:  # noqa: F811
    """A master, and its workers when asked for."""
    import pyspark

    home = Path(pyspark.__file__).parent
    folder = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(folder),
        "SPARK_DAEMON_JAVA_OPTS": SPARK_JIT,
    }
    launch = [str(home / "bin" / "spark-class")]
    driver_only: Path | None = folder / "driver-only"
    assert driver_only is not None
    driver_only.mkdir()
    own_mounts = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"']
    if subprocess.run([*own_mounts, str(driver_only), "true"], check=False).returncode:
        driver_only = None
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        name: str, *arguments: str, mounts: Sequence[str] = ()
    ) -> tuple[Path, subprocess.Popen[bytes]]:
        log = folder / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # (`exec`: the process id stays the JVM's)
                [*mounts, *launch, *arguments], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        processes.append(process)
        return log, process

    try:
        master_log, master = start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(free_port()),
        )
        _wait_for(master_log, "I have been elected leader", 1, master)

        def workers() -> None:
            for index in range(2):
                start(
                    f"worker{index}",
                    "org.apache.spark.deploy.worker.Worker",
                    url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(folder / f"w{index}"),
                    mounts=[*own_mounts, str(driver_only)] if driver_only else [],
                )
            _wait_for(master_log, "Registering worker", 2, master)

        yield Cluster(url, folder, workers, driver_only)
    finally:
        for process in processes:  # by process id: spark-class execs the JVM itself
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _audit(
    export: Path,
    placements: Path,
    *engine: str,
    spark_options: dict[str, str] | None = None,
    meanwhile: Callable[[Path], None] | None = None,
) -> tuple[dict[str, object], str]:
    """The audit's JSON report, and its stderr; `meanwhile` is given the file its stderr
    goes to, while it runs."""
    said = placements.with_suffix(".stderr")
    arguments = [str(export), "--placements", str(placements), "--at", AT, "--json", *engine]
    with said.open("w") as stderr, audit_process(arguments, spark_options, stderr) as running:
        if meanwhile is not None:
            try:
                meanwhile(said)
            except BaseException:
                running.kill()  # (an audit that waits for executors waits for ever)
                raise
        out, _ = running.communicate(timeout=600)
    assert running.returncode in (0, 1), said.read_text()[-3000:]  # 1: findings at error level
    report: dict[str, object] = json.loads(out)
    return report, said.read_text()


def test_audit_on_a_standalone_cluster_agrees_with_duckdb(cluster: Cluster, tmp_path: Path) -> None:
    """The audit starts before the cluster has a worker: it says that it waits for an
    executor, and goes on when the workers come. Its temporary files are where the
    executors do not see them (`driver_only`), as on a cluster of several machines: the
    placements, which an executor writes, are made beside the file named."""
    sys.path.insert(0, str(ROOT / "bench"))
    from make_sessions import write

    export = tmp_path / "sessions.ndjson"
    write(export, "sessions", 4_000)
    on_duck, _ = _audit(export, tmp_path / "duck.parquet")

    def workers_once_it_says_it_waits(said: Path) -> None:
        deadline = time.monotonic() + 120
        while "no executor" not in said.read_text(errors="replace"):
            assert time.monotonic() < deadline, said.read_text()[-3000:]
            time.sleep(0.5)
        assert f"Spark's master {cluster.url} has given this audit no executor" in (
            said.read_text()
        )
        cluster.workers()

    on_cluster, stderr = _audit(
        export,
        tmp_path / "cluster.parquet",
        "--engine",
        "spark",
        "--spark-master",
        cluster.url,
        # as docs/audit.md tells a user to size a job: Spark's own options, passed on
        spark_options={
            # the driver's temporary files where the executors do not see them
            **({"TMPDIR": str(cluster.driver_only)} if cluster.driver_only else {}),
            "PYSPARK_SUBMIT_ARGS": f"{SPARK_SUBMIT} --conf spark.sql.shuffle.partitions=4 "
            "--conf spark.executor.memory=512m pyspark-shell",
            # the Python an executor would start: none is there, and none is needed
            "PYSPARK_PYTHON": str(tmp_path / "no-python-here"),
        },
        meanwhile=workers_once_it_says_it_waits,
    )
    spark_kept_its_start_to_itself(stderr)
    assert on_cluster.pop("engine") == "spark" and on_duck.pop("engine") == "duckdb"
    assert on_cluster == on_duck
    assert on_duck["rules"]
    read = "SELECT * FROM read_parquet(?) ORDER BY ALL"
    duck_rows = duckdb.execute(read, [str(tmp_path / "duck.parquet")]).fetchall()
    cluster_rows = duckdb.execute(read, [str(tmp_path / "cluster.parquet")]).fetchall()
    assert len(duck_rows) > 3_000 and cluster_rows == duck_rows
    # the work ran on the cluster's executors: each worker started one for the audit
    for worker in ("w0", "w1"):
        assert list((cluster.folder / worker).glob("app-*/*/stderr")), worker

"""The same `newswatch run` on Beam's portable runners gives the same results as on the default one.

- Flink: Beam's FlinkRunner with an embedded Flink (`--flink_master [local]`, LOOPBACK SDK
  harness). It needs Java and Beam's Flink job-server jar: `make flink-jar` caches it under
  .cache/flink/ (or, where Maven does not serve it, builds the stand-in from ../shared/flink-jobserver/
  into .cache/flink/thin/), or FLINK_JOB_SERVER_JAR names one. Without them these tests skip with one
  line; with NEWSWATCH_REQUIRE_FLINK=1 (`make test-flink`) they fail instead.
- Beam's own portable job service (`--job_endpoint embed`): the Python half of a Flink run
  (pipeline proto submitted over the Job API, DoFns unpickled in a LOOPBACK SDK harness,
  state over the Fn API), with no Java. It always runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import apache_beam as beam
import pytest
import yaml

from tests.conftest import ROOT, read_lines, run_newswatch
from tests.feedserver import FeedServer
from tests.test_cli_e2e import check_invariant, feeds_config, serve_world

DEPLOY = ROOT / "deploy" / "flink"
FLINK_VERSION = os.environ.get("FLINK_VERSION", "2.2")
SUMMARY_COUNTS = ("fetched", "unique", "duplicates", "dead_letter_items", "alerts", "feeds_ok", "feeds_failed")
PORTABLE_EMBEDDED = ("--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "LOOPBACK")


def job_server_jar() -> Path:
    """FLINK_JOB_SERVER_JAR, else Beam's jar as `make flink-jar` caches it, else the stand-in it builds where
    Maven does not serve Beam's (see deploy/flink/fetch-job-server.sh)."""
    cached = ROOT / ".cache" / "flink" / f"beam-runners-flink-{FLINK_VERSION}-job-server-{beam.__version__}.jar"
    standins = sorted((ROOT / ".cache" / "flink" / "thin").glob("beam-flink-job-server-thin-*.jar"))
    return Path(os.environ.get("FLINK_JOB_SERVER_JAR") or (cached if cached.is_file() or not standins else standins[0]))


@pytest.fixture(scope="module")
def flink_args() -> tuple[str, ...]:
    jar = job_server_jar()
    missing = []
    if not shutil.which("java"):
        missing.append("`java` on PATH")
    if not jar.is_file():
        missing.append(f"the job-server jar {jar} (make flink-jar)")
    if missing:
        reason = "Flink tests need " + " and ".join(missing)
        if os.environ.get("NEWSWATCH_REQUIRE_FLINK") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    # Parallelism 1: the embedded cluster shares two cores with the test run.
    flink = ("--flink_master=[local]", f"--flink_version={FLINK_VERSION}", f"--flink_job_server_jar={jar}")
    return ("--runner=FlinkRunner", *flink, "--parallelism=1")


@pytest.fixture(scope="module")
def feeds(tmp_path_factory) -> Path:
    """The end-to-end tests' feeds (a wire, a republishing outlet, two broken feeds) on one loopback server."""
    with FeedServer() as server:
        serve_world(server)
        yield feeds_config(tmp_path_factory.mktemp("feeds"), server)


def run(out: Path, feeds: Path, mode: str, *runner_args: str) -> Path:
    bounded = ("--duration", "20", "--tick", "1") if mode == "stream" else ()
    result = run_newswatch("run", "--feeds", str(feeds), "--out", str(out), "--mode", mode, *bounded, *runner_args, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    return out


def outcome(out: Path) -> dict:
    """What a run decided, in forms that do not depend on the order or time it ran in."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    check_invariant(summary)
    return {
        "alerts": {(a["alert_id"], a["title"], tuple(a["actors"]), tuple(a["topics"])) for a in read_lines(out / "alerts.jsonl")},
        "alert_sources": {
            a["alert_id"]: sorted((s["feed"], s["url"]) for s in a["sources"]) for a in read_lines(out / "alerts.jsonl")
        },
        "items": {(i["story_id"], i["feed"], i["url"]) for i in read_lines(out / "items.jsonl")},
        "dead_letters": sorted((d["feed"], d["stage"]) for d in read_lines(out / "dead_letter.jsonl")),
        "counts": {name: summary[name] for name in SUMMARY_COUNTS},
    }


@pytest.fixture(scope="module")
def expected(feeds, tmp_path_factory) -> dict:
    """The default local runner's outcome on the same feeds: what every other runner must reproduce."""
    found = outcome(run(tmp_path_factory.mktemp("local") / "out", feeds, "batch"))
    assert len(found["alerts"]) == 2  # the fixture world's two alerts: a meaningful comparison, not two empty sets
    return found


def alert_ids(found: dict) -> set[str]:
    return {alert[0] for alert in found["alerts"]}


def test_portable_job_service_run_gives_the_same_outcome(tmp_path, feeds, expected):
    assert outcome(run(tmp_path / "out", feeds, "batch", *PORTABLE_EMBEDDED)) == expected


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_flink_run_gives_the_alerts_of_the_local_runner(flink_args, tmp_path, feeds, expected, mode):
    """Batch: the whole outcome matches. Stream (PeriodicImpulse, first-sight dedup in Beam state), for
    a bounded time: the same alerts by id; which copy of a story comes first, and so its title, may differ."""
    found = outcome(run(tmp_path / "out", feeds, mode, *flink_args))
    if mode == "batch":
        assert found == expected
    else:
        assert alert_ids(found) == alert_ids(expected)


def manifests(name: str) -> dict[str, dict]:
    """The Kubernetes objects of one deploy/flink/ file, by kind."""
    return {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8"))}


def test_kubernetes_manifests_wire_job_server_worker_pool_and_state_together():
    flink = manifests("flink-session.yaml")["FlinkDeployment"]
    server = manifests("beam-job-server.yaml")
    submit = manifests("submit-job.yaml")["Job"]["spec"]["template"]["spec"]["containers"][0]["args"]

    config = flink["spec"]["flinkConfiguration"]
    assert config["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert {"execution.checkpointing.interval", "execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"} <= set(
        config
    )
    assert config["metrics.reporter.prom.factory.class"].endswith("PrometheusReporterFactory")

    (pool,) = [
        c for c in flink["spec"]["taskManager"]["podTemplate"]["spec"]["containers"] if "--worker_pool" in c.get("args", [])
    ]
    assert f"--environment_config=localhost:{pool['ports'][0]['containerPort']}" in submit
    assert "--environment_type=EXTERNAL" in submit

    job_server = server["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert f"--flink-master={flink['metadata']['name']}-rest:8081" in job_server["args"]
    flink_line = flink["spec"]["flinkVersion"].removeprefix("v").replace("_", ".")
    assert job_server["image"] == f"apache/beam_flink{flink_line}_job_server:{beam.__version__}"
    port = next(p["port"] for p in server["Service"]["spec"]["ports"] if p["name"] == "job")
    assert f"--job_endpoint={server['Service']['metadata']['name']}:{port}" in submit


def test_sdk_worker_image_is_built_on_the_pinned_beam_release():
    assert f"ARG BEAM_VERSION={beam.__version__}\n" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")

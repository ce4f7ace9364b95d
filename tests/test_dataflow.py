"""Dataflow: `newswatch run --runner DataflowRunner --dry_run=True` translates the pipeline for
Dataflow offline (no job is submitted, nothing is staged), and the job holds our named stages.

Needs the `gcp` extra (part of `make install`). Without it these tests skip with one line;
in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal

import apache_beam as beam
import pytest

from pipelines import cli
from pipelines.options import NewswatchOptions
from tests.conftest import ROOT, write_yaml

try:
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
    from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401  (imports only with the gcp extra)
except ImportError:
    DataflowRunner = None

STAGES = {"FetchFeeds", "ParseEntries", "Normalise", "Deduplicate", "ClassifyTopics", "MatchActors", "EmitAlerts"}
# Syntactically valid placeholders: a dry run validates them but never contacts Google Cloud.
DATAFLOW_ARGS = (
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--project=newswatch-test",
    "--region=europe-west1",
    "--temp_location=gs://newswatch-test/tmp",
)
METADATA = ROOT / "deploy" / "dataflow" / "metadata.json"


@pytest.fixture
def dataflow_jobs(monkeypatch):
    """Runs `newswatch run` in this process and collects the Dataflow job each dry run built."""
    if DataflowRunner is None:
        reason = "Dataflow tests need the gcp extra: .venv/bin/pip install -e '.[gcp]' (make install does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    jobs = []
    translate = DataflowRunner.run_pipeline

    def run_pipeline(self, pipeline, options):
        result = translate(self, pipeline, options)
        jobs.append(result.job)
        return result

    monkeypatch.setattr(DataflowRunner, "run_pipeline", run_pipeline)
    sigterm = signal.getsignal(signal.SIGTERM)  # the CLI installs its own handler
    yield jobs
    signal.signal(signal.SIGTERM, sigterm)


@pytest.mark.parametrize("mode, job_type", [("batch", "JOB_TYPE_BATCH"), ("stream", "JOB_TYPE_STREAMING")])
def test_dry_run_translates_every_stage_for_dataflow(tmp_path, dataflow_jobs, mode, job_type):
    feeds = write_yaml(tmp_path / "feeds.yaml", {"feeds": [{"name": "wire", "url": "http://127.0.0.1:9/wire.xml"}]})
    status = cli.main(["run", "--feeds", str(feeds), "--out", str(tmp_path / "out"), "--mode", mode, *DATAFLOW_ARGS])
    assert status == 0
    (job,) = dataflow_jobs
    top_level = {t.unique_name for t in job.proto_pipeline.components.transforms.values() if "/" not in t.unique_name}
    assert STAGES <= top_level
    assert job.proto.type.name == job_type
    # Dataflow runs Python in Docker containers: every environment must have become one.
    assert {env.urn for env in job.proto_pipeline.components.environments.values()} == {"beam:env:docker:v1"}


def test_flex_template_parameters_are_options_newswatch_accepts():
    parser = argparse.ArgumentParser()
    NewswatchOptions._add_argparse_args(parser)
    accepted = {flag.removeprefix("--") for action in parser._actions for flag in action.option_strings}
    parameters = json.loads(METADATA.read_text(encoding="utf-8"))["parameters"]
    assert {p["name"] for p in parameters} <= accepted
    assert all(p["label"] and p["helpText"] for p in parameters)


def test_template_image_is_built_on_the_pinned_beam_release():
    assert f"ARG BEAM_VERSION={beam.__version__}\n" in (ROOT / "deploy" / "dataflow" / "Dockerfile").read_text(encoding="utf-8")

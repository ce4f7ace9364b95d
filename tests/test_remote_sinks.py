"""The sinks for distributed runs on TestPipeline: JSON-lines files through Beam's FileSystems, and
first-of-key in Beam state. A local directory stands in for gs://: FileSystems serves both alike."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from pipelines.remote_sinks import FirstOfKey, WriteJsonLines

ALERTS = [
    {"alert_id": "a-1", "title": "Lavrov arrives in Riyadh"},
    {"alert_id": "a-2", "title": "Guterres: aid convoys reached Darfur"},
    {"alert_id": "a-1", "title": "Lavrov arrives in Riyadh"},  # the same alert again, as a retry or a restart would bring
]


def written(directory: Path, name: str) -> dict[str, list[dict]]:
    """Each file's records, by file name."""
    return {
        path.name: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for path in sorted(directory.glob(f"{name}-*.jsonl"))
    }


def test_batch_writes_each_alert_once_into_one_whole_file(tmp_path):
    with TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        (
            p
            | beam.Create(ALERTS)
            | "Once" >> FirstOfKey(lambda alert: alert["alert_id"])
            | "Write" >> WriteJsonLines(str(tmp_path), "alerts", streaming=False)
        )
    (records,) = written(tmp_path, "alerts").values()
    assert sorted(records, key=lambda a: a["alert_id"]) == ALERTS[:2]
    # Every temporary file was renamed into place or removed (fileio leaves its empty temp folder on local disks).
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == list(written(tmp_path, "alerts"))


def test_stream_writes_a_file_per_window_when_the_window_closes(tmp_path):
    # TestStream needs a runner that implements it: the FnApiRunner does not, the bundle-based one does.
    options = PipelineOptions(["--runner=BundleBasedDirectRunner"])
    options.view_as(StandardOptions).streaming = True
    events = (
        TestStream()
        .add_elements([TimestampedValue(ALERTS[0], 5), TimestampedValue(ALERTS[1], 30)])
        .advance_watermark_to(70)
        .add_elements([TimestampedValue(ALERTS[2], 75), TimestampedValue({"alert_id": "a-3", "title": "Truce"}, 80)])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=options) as p:
        (
            p
            | events
            | "Once" >> FirstOfKey(lambda alert: alert["alert_id"])
            | "Write" >> WriteJsonLines(str(tmp_path), "alerts", streaming=True, window_s=60)
        )
    files = written(tmp_path, "alerts")
    assert [sorted(a["alert_id"] for a in records) for records in files.values()] == [["a-1", "a-2"], ["a-3"]]
    assert all("1970-01-01T00:0" in name for name in files)  # named by window: [0 s, 60 s) and [60 s, 120 s)

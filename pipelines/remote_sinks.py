"""Sinks for distributed runs (Flink, Dataflow): JSON lines under a path every worker can reach.

The local sinks (pipelines/sinks.py) append each line to a local file at once and remember
what they wrote in a SQLite state dir. On a cluster the workers share no disk, so here:
- outputs go through Beam's FileSystems to gs://, s3:// (with apache-beam[aws]) or a shared
  mount. fileio writes each window's records to temporary files and renames them into place
  when the window closes: a reader sees whole files only, and a retried bundle leaves no
  duplicate file. The price is latency: in stream mode a record appears when its window
  (`window_s`) closes, not line by line;
- "each alert once" rests on Beam state (`FirstOfKey`), which Flink keeps in its checkpoints
  and savepoints and Dataflow persists, instead of the local store.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.io import fileio
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import FixedWindows


class _FirstOfKeyFn(beam.DoFn):
    """(key, record) -> the record, for the first record of its key only."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
        _, record = element
        if not seen.read():
            seen.write(True)
            yield record


class FirstOfKey(beam.PTransform):
    """record -> the first record of each `key(record)`; later ones are dropped, across restarts
    from a checkpoint or savepoint too. The state holds one flag per key, for the job's lifetime."""

    def __init__(self, key: Callable[[object], str]):
        super().__init__()
        self._key = key

    def expand(self, records):
        return (
            records
            # Typed, so the key gets a deterministic coder: state is partitioned by its bytes.
            | "Key" >> beam.Map(lambda record, key=self._key: (key(record), record)).with_output_types(tuple[str, object])
            | "First" >> beam.ParDo(_FirstOfKeyFn())
        )


class WriteJsonLines(beam.PTransform):
    """dict -> one JSON line each, in `<directory>/<name>-00000-of-00001.jsonl` (batch: one file at
    the end of the run) or `<directory>/<name>-<window start>-<window end>-00000-of-00001.jsonl`
    (stream: one file per `window_s` window that had records); outputs the written files' metadata."""

    def __init__(self, directory: str, name: str, streaming: bool, window_s: float = 60.0):
        super().__init__()
        self._directory, self._name = directory, name
        self._streaming, self._window_s = streaming, window_s

    def expand(self, records):
        if self._streaming:  # fileio groups by window: a global window would never close in a stream
            records = records | "Window" >> beam.WindowInto(FixedWindows(self._window_s))
        return (
            records
            | "ToJson" >> beam.Map(json.dumps, ensure_ascii=False, sort_keys=True)
            # One shard: a file per window and output keeps readers simple at newswatch's volumes.
            | "Write"
            >> fileio.WriteToFiles(path=self._directory, file_naming=fileio.default_file_naming(self._name, ".jsonl"), shards=1)
        )

#!/usr/bin/env bash
# Fetches Beam's Flink job-server jar from Maven Central into .cache/flink/ (git-ignored), once,
# and prints its path. Beam's FlinkRunner would download the jar itself at every start; with
# the cached copy passed as --flink_job_server_jar it starts offline.
#
# The jar's Beam version is the apache-beam pin in pyproject.toml: the job server and the
# Python SDK must be the same release. FLINK_VERSION picks the Flink line (default 2.2).
#
# Where Maven Central's jar is not served (some mirrors lack it) and a stand-in job server sits beside
# the checkout in ../shared/flink-jobserver/ (the developers' and CI machines have one), its
# fetch-or-build.sh builds that into .cache/flink/thin/ instead. The last line printed is the jar's path.
#
# A failed fetch is one line on stderr. It fails the command only with NEWSWATCH_REQUIRE_FLINK=1
# (as `make test-flink` sets), so that `make test` goes on and skips the Flink tests instead.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
beam_version="$(sed -n 's/^ *"apache-beam==\([0-9.]*\)".*/\1/p' "$root/pyproject.toml" | head -n 1)"
flink_version="${FLINK_VERSION:-2.2}"
artifact="org.apache.beam:beam-runners-flink-${flink_version}-job-server:${beam_version}"
dir="$root/.cache/flink"
jar="$dir/beam-runners-flink-${flink_version}-job-server-${beam_version}.jar"

give_up() {
  if [ "${NEWSWATCH_REQUIRE_FLINK:-0}" = "1" ]; then
    echo "flink-jar: $1" >&2
    exit 1
  fi
  echo "flink-jar: $1; the Flink tests will be skipped" >&2
  exit 0
}

standin="$root/../shared/flink-jobserver/fetch-or-build.sh"
thin_dir="$dir/thin"

thin_jar() { ls "$thin_dir"/beam-flink-job-server-thin-*.jar 2>/dev/null | head -n 1; }

# The official jar could not be had: build the stand-in where there is one, else give up with the reason.
use_standin() {
  [ -x "$standin" ] || [ -f "$standin" ] || give_up "$1"
  echo "flink-jar: $1; using the stand-in job server from $standin" >&2
  mkdir -p "$thin_dir"
  bash "$standin" "$thin_dir" >&2 || give_up "$1, and the stand-in job server could not be built"
  thin_jar
}

if [ -s "$jar" ]; then
  echo "$jar"
  exit 0
fi
if [ -n "$(thin_jar)" ] && [ -d "$thin_dir/lib" ]; then
  thin_jar
  exit 0
fi
command -v mvn >/dev/null 2>&1 || give_up "Maven (mvn) is not installed, so $artifact cannot be fetched"

mkdir -p "$dir"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# -U: ask again rather than trust a failure Maven cached earlier (it would for a day).
if ! mvn -B -q -U dependency:copy -Dartifact="$artifact" -DoutputDirectory="$dir" >"$log" 2>&1; then
  # Maven's own reason, e.g. "Could not find artifact ... in central (...)", without its advice lines.
  reason="$(grep -o -m 1 -E '(Could not (find|transfer) artifact|Unable to find artifact|Couldn.t download).*' "$log" || tail -n 1 "$log")"
  use_standin "mvn could not fetch $artifact: $reason"
  exit 0
fi
echo "$jar"

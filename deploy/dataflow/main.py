"""Flex Template entry point: the launcher runs this file with the template's parameters and
Dataflow's own options (--project, --region, --temp_location, ...) as flags."""

import sys

from pipelines import cli

if __name__ == "__main__":
    # DataflowRunner first, so a --runner from the launcher still wins; --no_wait_until_finish
    # because the launcher must exit once the job is submitted, not when a stream job ends.
    sys.exit(cli.main(["run", "--runner=DataflowRunner", *sys.argv[1:], "--no_wait_until_finish"]))

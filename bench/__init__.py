"""`make bench`: throughput, latency and memory of newswatch, each against a baseline measured in the same run."""

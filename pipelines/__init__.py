"""newswatch: a streaming news-monitoring pipeline on Apache Beam."""

__version__ = "0.1.0"

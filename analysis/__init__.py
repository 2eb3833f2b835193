"""pqdflow.analysis."""

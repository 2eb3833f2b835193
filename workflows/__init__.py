"""pqdflow.workflows."""

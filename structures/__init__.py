"""pqdflow.structures."""

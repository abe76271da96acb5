"""The HTTP API `rag serve` runs."""

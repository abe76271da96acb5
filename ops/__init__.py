"""Operating the appliance: the `rag` command (cli/), the HTTP API (api/), the local stack,
health, metrics, backups and evaluation. Building and installing it lives in packaging/;
the development tools (benchmarks, evaluation corpora, sample-data generators) in tools/,
which the wheel and the image leave out."""

"""Tools for developing the appliance, not shipped with it: evaluation corpora, benchmarks and
the sample share's generator."""

"""Operating the appliance: the `rag` command, the local stack, setup and packaging."""

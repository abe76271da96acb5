"""Building and installing the appliance: the air-gapped bundle and its installer, the
container image, the dependency pins and the model folders `make setup` prepares."""

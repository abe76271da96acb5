#!/usr/bin/env bash
# Build the air-gapped install bundle on a connected build host (Docker engine, the package
# registries and the model hub reachable):
#   ops/bundle.sh OUT_DIR [--skip-images] [--skip-models] [--sign-key KEYID]
# See ops/packaging/airgap/bundle.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv/bin/python"
[ -x "$python" ] || { echo "bundle.sh: $python is missing: run \`make setup\` first" >&2; exit 2; }
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m ops.packaging.airgap.bundle "$@"

#!/usr/bin/env bash
# Install or upgrade the appliance from an install bundle, on the air-gapped host:
#   BUNDLE_DIR/install.sh BUNDLE_DIR [--verify-only] [--install-dir /srv/rag] [--json] ...
# Needs bash, python3 (3.11 or newer) and, past --verify-only, Docker with Compose v2.
# The Python libraries the installer uses travel in the bundle (installer/vendor).
# See ops/packaging/airgap/install.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ -d "$here/installer/ops/packaging/airgap" ]; then
    # Run from a bundle: its own copy of the installer and libraries.
    code="$here/installer"
    path="$code:$code/vendor"
    candidates=(python3.13 python3.12 python3.11 python3)
else
    # Run from a checkout (ops/install.sh): the repository's code and environment.
    code="$(dirname "$here")"
    path="$code"
    candidates=("$code/.venv/bin/python" python3.13 python3.12 python3.11 python3)
fi

python="${RAG_INSTALL_PYTHON:-}"
if [ -z "$python" ]; then
    for candidate in "${candidates[@]}"; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
fi
if [ -z "$python" ]; then
    echo "install.sh: no python3 of version 3.11 or newer found: install one (e.g. python3.11)" \
        "or point RAG_INSTALL_PYTHON at it" >&2
    exit 2
fi

# No bytecode: __pycache__ folders written into the bundle would fail its next verification.
export PYTHONDONTWRITEBYTECODE=1
PYTHONPATH="$path" exec "$python" -s -m ops.packaging.airgap.install "$@"

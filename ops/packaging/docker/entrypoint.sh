#!/bin/sh
# Entrypoint of the app image (the `ingest` and `ui` services): turn the API keys that
# Compose mounts as secret files into the settings pydantic-settings reads, then run the
# command. A secret file that exists but cannot be read stops the container: starting
# without the key would only fail later with a less clear 401/403.
# Whatever the command creates is its owner's alone (umask 077, as settings.protect_state),
# and a data folder left open to others by an older image is closed.
set -eu
umask 077
if [ -d "${RAG_DATA_DIR:-}" ] && [ -O "$RAG_DATA_DIR" ]; then
    chmod go-rwx "$RAG_DATA_DIR" 2>/dev/null || true
fi

load_secret() {
    # load_secret VARIABLE FILE: export VARIABLE with FILE's content (trailing newline dropped).
    [ -e "$2" ] || return 0
    if ! value=$(cat "$2" 2>/dev/null) || [ -z "$value" ]; then
        echo "rag-entrypoint: secret $2 is unreadable or empty for uid $(id -u);" \
            "make it readable by group 10001 (chown root:10001, chmod 0440)" >&2
        exit 1
    fi
    export "$1=$value"
}

load_secret RAG_QDRANT__API_KEY /run/secrets/qdrant_api_key
load_secret RAG_LLM__API_KEY /run/secrets/vllm_api_key
unset value

exec "$@"

#!/usr/bin/env bash
# `make run`: the appliance on the embedded default. Ingests the sample share, starts the
# local LLM server, the API and the UI, prints where to sign in, and stops them on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

RAG=.venv/bin/rag
SAMPLE_SHARE=ops/sample-share
DEMO_USER=demo

# The sample share is public to everyone who signs in: make sure the checkout agrees.
chmod -R a+rX "$SAMPLE_SHARE"

echo "Ingesting the sample share ($SAMPLE_SHARE)..."
"$RAG" ingest "$SAMPLE_SHARE"

# The admin page offers an ingestion run of the sample share.
RAG_INGEST__SHARES="[\"$(pwd)/$SAMPLE_SHARE\"]"
export RAG_INGEST__SHARES

echo "Starting the LLM server, the API and the UI (the first start compiles the model: a few minutes)..."
trap 'echo; echo "Stopping..."; "$RAG" down >/dev/null; exit 0' INT TERM
"$RAG" up

password=$(.venv/bin/python -c "import secrets; print(secrets.token_urlsafe(12))")
printf '%s\n' "$password" | "$RAG" users add "$DEMO_USER" --groups staff --admin --json >/dev/null

urls=$("$RAG" up --json | .venv/bin/python -c "import json, sys; u = json.load(sys.stdin); print(u['ui_url'], u['api_url'])")
ui_url=${urls% *}
api_url=${urls#* }
cat <<MSG

  The appliance is running.
  Open:     $ui_url
  Sign in:  $DEMO_USER / $password   (an admin: the Admin page starts ingestion runs)
  Try:      What is the approved budget of the Harbour Renovation Project?
  API:      $api_url   (a token: .venv/bin/rag tokens create $DEMO_USER)

  Ctrl-C stops it.
MSG
while true; do sleep 3600; done

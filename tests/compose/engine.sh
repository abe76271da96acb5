#!/usr/bin/env bash
# A Docker engine and Compose v2 for the Compose tests, on a Debian bookworm test host:
#   tests/compose/engine.sh
# Installs what is missing (Debian's docker.io, debootstrap, iptables; Compose v2's plugin
# from Debian trixie's docker-compose package, as bookworm's is Compose v1), then starts
# dockerd when no engine answers. Its data root lives outside the checkout and is kept
# between runs, so built layers are reused; nothing relies on it being there.
set -euo pipefail

state="${RAG_TEST_DOCKER_ROOT:-/var/lib/rag-test-docker}"
plugin_dir=/usr/local/lib/docker/cli-plugins
say() { echo "[engine] $*"; }
fail() { echo "engine.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root: it installs packages and starts dockerd"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v iptables >/dev/null || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
    say "installing Compose v2 (trixie's docker-compose package, plugin binary only)"
    apt_dir="$(mktemp -d)"
    trap 'rm -rf "$apt_dir"' EXIT
    mkdir -p "$apt_dir/lists/partial"
    echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
    apt_options=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::archives=$apt_dir")
    apt-get -qq "${apt_options[@]}" update 2>/dev/null
    (cd "$apt_dir" && apt-get -qq "${apt_options[@]}" download docker-compose 2>/dev/null)
    dpkg-deb -x "$apt_dir"/docker-compose_*.deb "$apt_dir/extracted"
    mkdir -p "$plugin_dir"
    install -m 0755 "$apt_dir/extracted/usr/libexec/docker/cli-plugins/docker-compose" "$plugin_dir/"
    docker compose version >/dev/null || fail "the Compose plugin does not run on this host"
fi

if docker info >/dev/null 2>&1; then
    say "a Docker engine answers: $(docker version --format '{{.Server.Version}}')"
    exit 0
fi
mkdir -p "$state/data" "$state/exec"
say "starting dockerd (data root $state/data, log $state/dockerd.log)"
nohup dockerd --data-root "$state/data" --exec-root "$state/exec" \
    --pidfile "$state/dockerd.pid" -H unix:///var/run/docker.sock \
    >"$state/dockerd.log" 2>&1 &
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { say "dockerd is up"; exit 0; }
    sleep 1
done
tail -n 5 "$state/dockerd.log" >&2
fail "dockerd did not answer within 60 s: see $state/dockerd.log"

#!/usr/bin/env bash
# Build the image every appliance image starts from, from a Debian mirror alone: no registry
# (Docker Hub or other) is needed, only the apt mirror the build host already uses.
#   ops/packaging/docker/base.sh [--tag rag-base:bookworm] [--mirror URL]
#                                [--security-mirror URL] [--rebuild]
# Needs root, debootstrap and a Docker engine. An image already tagged is kept unless
# --rebuild is given. The Dockerfiles take it as their BASE_IMAGE build argument.
set -euo pipefail

tag="rag-base:bookworm"
suite="bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
rebuild=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --mirror) mirror="$2"; shift 2 ;;
        --security-mirror) security_mirror="$2"; shift 2 ;;
        --rebuild) rebuild=1; shift ;;
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "base.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "base.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root: run it as root"
command -v debootstrap >/dev/null || fail "debootstrap is missing: apt-get install debootstrap"
docker info >/dev/null 2>&1 || fail "no Docker engine answers: start dockerd, then run again"

if [ "$rebuild" -eq 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base.sh: $tag is present (--rebuild builds it again)"
    exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
started=$SECONDS
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 5 "$root.log" >&2; fail "debootstrap from $mirror failed (log: $root.log)"; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
# Images stay small: no documentation, no locales but C, no apt caches.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
cat >"$root/etc/apt/apt.conf.d/01-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $suite $mirror" \
    - "$tag" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "base.sh: built $tag from $mirror in $((SECONDS - started)) s ($((size / 1024 / 1024)) MB)"

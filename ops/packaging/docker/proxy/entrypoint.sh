#!/bin/sh
# Entrypoint of the front door (the `proxy` service): pick the TLS certificate, write nginx's
# configuration from the template, then run the command (nginx, with that configuration).
#
# The certificate: tls.crt (the full chain) and tls.key in /etc/rag-proxy/tls, which Compose
# mounts read-only from the install folder's tls/. When neither is there, a self-signed one
# is made at the first start and kept in /var/lib/rag-proxy (a volume), and made again when it
# is within 30 days of expiring or SERVER_NAME changed. Either way its SHA-256 fingerprint is logged, so users can
# compare it with what their browser shows.
# Environment: SERVER_NAME (the self-signed certificate's name, default localhost),
# PUBLIC_HTTPS_PORT (the host's HTTPS port the HTTP redirect names, default 443),
# MAX_BODY_BYTES (default 1000000, the API's RAG_API__MAX_REQUEST_BYTES), UI_UPSTREAM and
# API_UPSTREAM (host:port, default ui:8501 and api:8600).
set -eu
umask 077

# The paths are the image's; the PROXY_* variables move them for a run outside it.
supplied_dir="${PROXY_TLS_DIR:-/etc/rag-proxy/tls}"
state_dir="${PROXY_STATE_DIR:-/var/lib/rag-proxy}"
template="${PROXY_TEMPLATE:-/etc/rag-proxy/nginx.conf.template}"
config="${PROXY_CONFIG:-/tmp/nginx.conf}"

server_name="${SERVER_NAME:-localhost}"
https_port="${PUBLIC_HTTPS_PORT:-443}"
max_body="${MAX_BODY_BYTES:-1000000}"
ui_upstream="${UI_UPSTREAM:-ui:8501}"
api_upstream="${API_UPSTREAM:-api:8600}"

fail() {
    echo "proxy-entrypoint: $*" >&2
    exit 1
}

log() {
    # log EVENT KEY VALUE ...: one JSON line on stderr (values hold no quotes or backslashes).
    line="{\"event\":\"$1\""
    shift
    while [ $# -ge 2 ]; do
        line="$line,\"$1\":\"$2\""
        shift 2
    done
    echo "$line}" >&2
}

echo "$server_name" | grep -Eqx '[A-Za-z0-9.-]{1,253}' \
    || fail "SERVER_NAME '$server_name' is not a host name or IPv4 address"
echo "$https_port" | grep -Eqx '[0-9]{1,5}' || fail "PUBLIC_HTTPS_PORT '$https_port' is not a port"
echo "$max_body" | grep -Eqx '[0-9]{1,12}' || fail "MAX_BODY_BYTES '$max_body' is not a number"
echo "$ui_upstream" | grep -Eqx '[A-Za-z0-9.-]+:[0-9]{1,5}' \
    || fail "UI_UPSTREAM '$ui_upstream' is not host:port"
echo "$api_upstream" | grep -Eqx '[A-Za-z0-9.-]+:[0-9]{1,5}' \
    || fail "API_UPSTREAM '$api_upstream' is not host:port"

if [ -e "$supplied_dir/tls.crt" ] || [ -e "$supplied_dir/tls.key" ]; then
    cert="$supplied_dir/tls.crt"
    key="$supplied_dir/tls.key"
    source=supplied
    for file in "$cert" "$key"; do
        [ -e "$file" ] || fail "$file is missing: put both tls.crt and tls.key in the tls folder, or neither for a self-signed certificate"
        [ -r "$file" ] || fail "$file is not readable by uid $(id -u): chown root:$(id -g) it and chmod 0640"
    done
    openssl x509 -in "$cert" -noout 2>/dev/null || fail "$cert is not a PEM certificate"
    [ "$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null)" = "$(openssl pkey -in "$key" -pubout 2>/dev/null)" ] \
        || fail "$key is not the private key of $cert (or is encrypted: nginx needs it without a passphrase)"
    openssl x509 -in "$cert" -noout -checkend 0 >/dev/null \
        || log tls_certificate_expired path "$cert"
else
    cert="$state_dir/self-signed.crt"
    key="$state_dir/self-signed.key"
    source=self-signed
    [ -w "$state_dir" ] || fail "$state_dir is not writable by uid $(id -u): mount the proxy-state volume there"
    if ! { [ -s "$cert" ] && [ -s "$key" ] \
        && [ "$(cat "$state_dir/self-signed.name" 2>/dev/null)" = "$server_name" ] \
        && openssl x509 -in "$cert" -noout -checkend 2592000 >/dev/null 2>&1; }; then
        if echo "$server_name" | grep -Eqx '[0-9.]+'; then
            alt_name="IP:$server_name"
        else
            alt_name="DNS:$server_name"
        fi
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
            -subj "/CN=$server_name" -addext "subjectAltName=$alt_name" \
            -addext "basicConstraints=critical,CA:FALSE" \
            -addext "extendedKeyUsage=serverAuth" \
            -keyout "$key.new" -out "$cert.new" 2>/dev/null \
            || fail "could not make a self-signed certificate in $state_dir"
        mv "$key.new" "$key"
        mv "$cert.new" "$cert"
        echo "$server_name" >"$state_dir/self-signed.name"
        log tls_certificate_created path "$cert" name "$server_name"
    fi
fi

fingerprint=$(openssl x509 -in "$cert" -noout -fingerprint -sha256 | cut -d= -f2)
not_after=$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)
log tls_certificate source "$source" path "$cert" sha256 "$fingerprint" not_after "$not_after"

if [ "$https_port" = 443 ]; then
    port_suffix=""
else
    port_suffix=":$https_port"
fi
sed -e "s|@TLS_CERT@|$cert|g" -e "s|@TLS_KEY@|$key|g" \
    -e "s|@MAX_BODY_BYTES@|$max_body|g" -e "s|@HTTPS_PORT_SUFFIX@|$port_suffix|g" \
    -e "s|@UI_UPSTREAM@|$ui_upstream|g" -e "s|@API_UPSTREAM@|$api_upstream|g" \
    "$template" >"$config"
if grep -q '@[A-Z_]*@' "$config"; then
    fail "$config still has a placeholder: $(grep -o '@[A-Z_]*@' "$config" | head -n 1)"
fi

if [ "${1:-}" = nginx ]; then
    shift
    exec nginx -e stderr -c "$config" "$@"
fi
exec "$@"

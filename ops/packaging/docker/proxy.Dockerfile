# The appliance's front door (the `proxy` service of docker-compose.yml): Debian's nginx,
# terminating TLS and passing `/v1/`, `/mcp` and `/healthz` to `api`, everything else to `ui`.
# Build from the repository root (Compose does):
#   docker build -f ops/packaging/docker/proxy.Dockerfile .
# It is the only image that holds nginx. It runs as uid 10002 on unprivileged ports
# (8080 and 8443; Compose publishes them on the host's ports), so it needs no capability.

ARG BASE_IMAGE=rag-base:bookworm
FROM ${BASE_IMAGE}

# openssl: the self-signed certificate made at first start when the operator supplies none.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx openssl \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /etc/nginx/sites-enabled \
        /etc/nginx/sites-available /etc/nginx/conf.d /var/www/html

# /var/lib/rag-proxy keeps the generated certificate: a fresh named volume mounted there
# inherits its owner and mode.
RUN groupadd --gid 10002 rag-proxy \
    && useradd --uid 10002 --gid rag-proxy --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rag-proxy \
    && install -d -o rag-proxy -g rag-proxy -m 0700 /var/lib/rag-proxy

COPY ops/packaging/docker/proxy/nginx.conf.template /etc/rag-proxy/nginx.conf.template
COPY ops/packaging/docker/proxy/entrypoint.sh /usr/local/bin/proxy-entrypoint
RUN chmod 0644 /etc/rag-proxy/nginx.conf.template && chmod 0755 /usr/local/bin/proxy-entrypoint

USER rag-proxy
EXPOSE 8080 8443
STOPSIGNAL SIGQUIT
ENTRYPOINT ["proxy-entrypoint"]
CMD ["nginx", "-g", "daemon off;"]

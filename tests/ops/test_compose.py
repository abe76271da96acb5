"""The appliance's Compose stack, checked on paper (no Docker engine here) and, where the
command is ours, run natively: the Compose files (the production stack, scale-out and the
CPU profile), the images' Dockerfiles, the front door's nginx template, Qdrant's config and
the env-file template keep the rules the appliance is installed under."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import streamlit
import yaml
from pydantic import BaseModel

from llm.server import health_url, server_command
from ops.cli import parser as rag_parser
from ops.packaging.airgap import seal
from ops.packaging.airgap.bundle import bound_files, expand
from settings import OFFLINE_ENVIRONMENT, PROJECT_ROOT, Settings
from tests.conftest import RAG, free_port

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
SCALE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "compose.scale.yml"
CPU = PROJECT_ROOT / "ops" / "packaging" / "docker" / "compose.cpu.yml"
DOCKERFILE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "app.Dockerfile"
PROXY_DOCKERFILE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "proxy.Dockerfile"
PROXY_TEMPLATE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "proxy" / "nginx.conf.template"
PROXY_ENTRYPOINT = PROJECT_ROOT / "ops" / "packaging" / "docker" / "proxy" / "entrypoint.sh"
VLLM_CPU_DOCKERFILE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "vllm-cpu.Dockerfile"
LLM_SERVER_REQUIREMENTS = PROJECT_ROOT / "ops" / "packaging" / "requirements" / "llm-server.txt"
ENTRYPOINT = PROJECT_ROOT / "ops" / "packaging" / "docker" / "entrypoint.sh"
ENV_TEMPLATE = PROJECT_ROOT / "ops" / "packaging" / "docker" / "appliance.env.example"
QDRANT_CONFIG = PROJECT_ROOT / "ops" / "qdrant" / "config.yaml"
LLM_SERVER_PYTHON = PROJECT_ROOT / ".venv-llm" / "bin" / "python"

APP_SERVICES = ("ingest", "ui", "api", "metrics")
SHARE_READERS = ("ingest", "ui")
MODEL_READERS = ("ingest", "ui", "api")
# The front door publishes HTTPS and HTTP on the host address and ports the operator picks;
# inside, nginx listens unprivileged.
FRONT_DOOR_PORTS = [
    "${PUBLISH_ADDRESS:-0.0.0.0}:${HTTPS_PORT:-443}:8443",
    "${PUBLISH_ADDRESS:-0.0.0.0}:${HTTP_PORT:-80}:8080",
]
BEHIND_THE_FRONT_DOOR = ("ui", "api")
LONGEST_INTERFACE_NAME = 15
# Compose replaces these sequences when merging files; it appends every other one.
REPLACED_ON_MERGE = {"command", "entrypoint", "test"}
# The build arguments both images take, each from the Compose variable of the same name.
BUILD_ARGS = {
    "BASE_IMAGE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "EXTRA_CA_CERT",
}  # fmt: skip
PINNED_TAG = re.compile(r":(v?\d+\.\d+\.\d+|\$\{[A-Z_]+:-\d+\.\d+\.\d+\})$")
SECRET_NAME = re.compile(r"(^|_)(API_?KEY|KEY|PASSWORD|PASSWD|PASS|TOKEN|SECRET|CREDENTIALS?)(_|$)")
TOKEN_SHAPED = re.compile(r"[A-Za-z0-9+/=_.\-]{20,}")
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(:?-(?P<default>[^}]*))?\}")


# -- reading the files ------------------------------------------------------------------------


class Reset:
    """Compose's `!reset`: the key is dropped from the merged file."""


class Override:
    """Compose's `!override`: the value replaces the base file's instead of merging into it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader (anchors, `<<:` merge keys) with Compose's merge tags."""


def _construct_reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


ComposeLoader.add_constructor("!reset", _construct_reset)
ComposeLoader.add_constructor("!override", _construct_override)


def load_yaml(path: Path) -> dict[str, Any]:
    """YAML as Compose reads it: anchors, `<<:` merge keys, `!reset` and `!override`."""
    data = yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 (a SafeLoader)
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def compose_merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's rule for `-f a.yml -f b.yml`: mappings merge, sequences append (command,
    entrypoint and healthcheck test are replaced), scalars are replaced; `!reset` drops a key,
    `!override` replaces a value whole."""
    if isinstance(override, Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if isinstance(value, Reset):
                merged.pop(name, None)
            else:
                merged[name] = compose_merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_ON_MERGE:
        return base + override
    return override


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    pairs = []
    for line in logical:
        instruction, _, arguments = line.strip().partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [index for index, (name, _) in enumerate(instructions) if name == "FROM"]
    return instructions[starts[-1] :]


def image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, arguments in instructions:
        if name == "ENV":
            for pair in arguments.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def template_settings(path: Path) -> list[tuple[int, str, str, bool]]:
    """(line index, NAME, value, commented) of each `NAME=value` or `# NAME=value` line."""
    found = []
    for index, line in enumerate(path.read_text().splitlines()):
        match = re.fullmatch(r"(?P<hash>#\s*)?(?P<name>RAG_[A-Z0-9_]+)=(?P<value>.*)", line)
        if match:
            value = match["value"]
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            found.append((index, match["name"], value, match["hash"] is not None))
    return found


def setting_env_names(model: type[BaseModel], prefix: str = "RAG_") -> Iterator[str]:
    """Every leaf setting's environment variable: prefix RAG_, `__` between nested names."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from setting_env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}"


def looks_like_secret(name: str, value: object) -> bool:
    """A value that is, or may be, a key, password or token written out in the open."""
    text = str(value)
    if text == "":
        return False
    if name.upper().endswith("_FILE") and text.startswith("/"):
        return False  # where the secret is read from, not the secret
    if SECRET_NAME.search(name.upper()):
        return True
    if TOKEN_SHAPED.fullmatch(text) and not text.startswith(("/", "$")):
        return bool(re.search(r"\d", text)) and bool(re.search(r"[A-Za-z]", text))
    return False


def default_of(value: str) -> str:
    match = INTERPOLATION.fullmatch(value)
    assert match and match["default"], f"{value!r} is not ${{VARIABLE:-default}}"
    return match["default"]


def flag_value(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return str(command[command.index(flag) + 1])


def network_names(service: dict[str, Any]) -> set[str]:
    networks = service.get("networks", {})
    return set(networks) if isinstance(networks, dict | list) else set()


def volume_targets(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Target path → {source, read_only} for short (`src:dst[:ro]`) and long volume syntax."""
    targets = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            targets[target] = {"source": source, "read_only": mode == ["ro"]}
        else:
            targets[volume["target"]] = volume
    return targets


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def scaled(stack: dict[str, Any]) -> dict[str, Any]:
    merged = compose_merge(stack, load_yaml(SCALE))
    assert isinstance(merged, dict)
    return merged


@pytest.fixture(scope="module")
def cpu_stack(stack: dict[str, Any]) -> dict[str, Any]:
    merged = compose_merge(stack, load_yaml(CPU))
    assert isinstance(merged, dict)
    return merged


@pytest.fixture(
    scope="module",
    params=["docker-compose.yml", "with compose.scale.yml", "with compose.cpu.yml"],
)
def any_stack(
    request: pytest.FixtureRequest,
    stack: dict[str, Any],
    scaled: dict[str, Any],
    cpu_stack: dict[str, Any],
) -> dict[str, Any]:
    stacks = {"docker-compose.yml": stack, "with compose.scale.yml": scaled}
    return stacks.get(request.param, cpu_stack)


@pytest.fixture(scope="module")
def vllm_flags() -> str:
    """The help of the vLLM server the test suite runs (the CPU build of the same release)."""
    result = subprocess.run(
        [str(LLM_SERVER_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--help=all"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE_ENVIRONMENT},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# -- services, networks, common rules --------------------------------------------------------


def test_the_stack_has_its_services(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) == {"qdrant", "vllm", "ingest", "ui", "api", "metrics", "proxy"}


def test_every_service_keeps_the_common_rules(any_stack: dict[str, Any]) -> None:
    for name, service in any_stack["services"].items():
        assert service.get("pull_policy") == "never", name
        assert service.get("restart") in ("unless-stopped", "always"), name
        assert service.get("logging", {}).get("driver") == "json-file", name
        healthcheck = service.get("healthcheck", {})
        assert healthcheck.get("test") and not healthcheck.get("disable"), name
        assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), name
        image = str(service.get("image", ""))
        assert PINNED_TAG.search(image) and "latest" not in image, f"{name}: {image!r}"


def test_every_service_carries_the_common_offline_switches(any_stack: dict[str, Any]) -> None:
    for name, service in any_stack["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: write `environment` as a mapping"
        assert environment.get("HF_HUB_OFFLINE") == "1", name
        assert environment.get("DO_NOT_TRACK") == "1", name


def test_each_service_carries_its_own_offline_switches(any_stack: dict[str, Any]) -> None:
    services = any_stack["services"]
    for name, service in services.items():
        environment = service["environment"]
        if name.startswith("qdrant"):
            assert environment["QDRANT__TELEMETRY_DISABLED"] == "true", name
        if name.startswith("vllm"):
            assert environment["VLLM_NO_USAGE_STATS"] == "1", name
            assert environment["VLLM_DO_NOT_TRACK"] == "1", name
            assert environment["HF_HUB_DISABLE_TELEMETRY"] == "1", name
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert {key: environment.get(key) for key in OFFLINE_ENVIRONMENT} == OFFLINE_ENVIRONMENT


def test_only_the_front_door_publishes_ports_on_the_operators_address(
    any_stack: dict[str, Any],
) -> None:
    publishing = {name for name, service in any_stack["services"].items() if "ports" in service}
    assert publishing == {"proxy"}
    ports = [str(entry) for entry in any_stack["services"]["proxy"]["ports"]]
    assert ports == FRONT_DOOR_PORTS
    template = PROXY_TEMPLATE.read_text()
    assert re.search(r"listen 8443 ssl http2 default_server;", template)
    assert re.search(r"listen 8080 default_server;", template)
    https_port = any_stack["services"]["proxy"]["environment"]["PUBLIC_HTTPS_PORT"]
    assert https_port == "${HTTPS_PORT:-443}", "the HTTP redirect must name the published port"


def test_the_front_door_is_alone_outside_the_internal_networks(
    any_stack: dict[str, Any],
) -> None:
    networks = any_stack["networks"]
    assert set(networks) == {"backend", "frontend", "edge"}
    assert networks["backend"]["internal"] is True
    assert networks["frontend"]["internal"] is True
    assert not networks["edge"].get("internal", False)
    for name, service in any_stack["services"].items():
        expected = {"backend"}
        if name in BEHIND_THE_FRONT_DOOR:
            expected = {"backend", "frontend"}
        if name == "proxy":
            expected = {"edge", "frontend"}
        assert network_names(service) == expected, name


def test_every_network_has_a_fixed_bridge_name_the_seal_matches(stack: dict[str, Any]) -> None:
    longest_prefix = "x" * 9
    for name, network in stack["networks"].items():
        bridge = network["driver_opts"]["com.docker.network.bridge.name"]
        prefix, _, suffix = bridge.partition("}")
        assert prefix == "${BRIDGE_PREFIX:-" + seal.DEFAULT_PREFIX and suffix.startswith("-"), name
        assert len(longest_prefix + suffix) <= LONGEST_INTERFACE_NAME, name
        seal.validate_prefix(longest_prefix)


def test_no_container_forwards_an_outside_name(any_stack: dict[str, Any]) -> None:
    for name, service in any_stack["services"].items():
        assert service.get("dns") == ["0.0.0.0"], name
        assert "timeout:1" in service.get("dns_opt", []), name


def test_the_ui_trusts_the_forwarded_address_only_from_the_frontend_network(
    stack: dict[str, Any],
) -> None:
    subnet = stack["networks"]["frontend"]["ipam"]["config"][0]["subnet"]
    trusted = stack["services"]["ui"]["environment"]["RAG_UI__TRUSTED_PROXIES"]
    assert trusted == f'["{subnet}"]'
    assert ipaddress.ip_network(default_of(subnet)).is_private
    template = PROXY_TEMPLATE.read_text()
    # The client's claim is replaced, never appended to.
    assert template.count("proxy_set_header X-Forwarded-For $remote_addr;") == 2
    assert "$proxy_add_x_forwarded_for" not in template


def test_our_services_run_our_image_as_a_non_root_user(stack: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = stack["services"][name]
        assert str(service["image"]).startswith("rag-appliance:"), name
        assert service["build"]["dockerfile"] == "ops/packaging/docker/app.Dockerfile", name
        assert (PROJECT_ROOT / service["build"]["dockerfile"]).exists()
        assert "user" not in service, f"{name}: the image's USER decides"


def test_shares_and_models_reach_the_apps_read_only(stack: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        mounts = volume_targets(stack["services"][name])
        assert "/data" in mounts and not mounts["/data"].get("read_only"), name
        assert ("/models" in mounts) == (name in MODEL_READERS), name
        assert ("/shares" in mounts) == (name in SHARE_READERS), name
        for target in {"/models", "/shares"} & set(mounts):
            assert mounts[target]["read_only"] is True, f"{name}: {target}"
    assert volume_targets(stack["services"]["vllm"])["/models/llm"]["read_only"] is True


# -- secrets ----------------------------------------------------------------------------------


def test_the_secret_detector_catches_literals_and_passes_switches() -> None:
    assert looks_like_secret("RAG_QDRANT__API_KEY", "hunter2")
    assert looks_like_secret("VLLM_API_KEY", "${VLLM_KEY}")
    assert looks_like_secret("SOME_SETTING", "sk-4f9a8b7c6d5e4f3a2b1c0d9e")
    assert not looks_like_secret("TOKENIZERS_PARALLELISM", "false")
    assert not looks_like_secret("RAG_LLM__MODEL", "mistral-nemo-instruct")
    assert not looks_like_secret("RAG_QDRANT__URL", "http://qdrant:6333")
    assert not looks_like_secret("RAG_QDRANT__API_KEY", "")


def test_no_key_password_or_token_is_written_as_a_value(any_stack: dict[str, Any]) -> None:
    for name, service in any_stack["services"].items():
        for key, value in service.get("environment", {}).items():
            assert not looks_like_secret(key, value), f"{name}: {key}"
        command = [str(part) for part in service.get("command", [])]
        assert "--api-key" not in command, f"{name}: the key would show in the process list"
    for key, value in image_env(dockerfile_instructions(DOCKERFILE)).items():
        assert not looks_like_secret(key, value), f"app.Dockerfile: {key}"
    for _, key, value, _ in template_settings(ENV_TEMPLATE):
        assert not looks_like_secret(key, value), f"appliance.env.example: {key}"


def test_api_keys_reach_the_services_as_compose_secrets(any_stack: dict[str, Any]) -> None:
    declared = any_stack["secrets"]
    assert all("file" in secret for secret in declared.values())
    for name, service in any_stack["services"].items():
        wanted = {"qdrant_api_key"} if name.startswith("qdrant") else {"vllm_api_key"}
        if name in APP_SERVICES:
            wanted = {"qdrant_api_key", "vllm_api_key"}
        if name == "proxy":
            wanted = set()
        assert set(service.get("secrets", [])) == wanted, name
        assert wanted <= set(declared), name
    entrypoint = ENTRYPOINT.read_text()
    assert "RAG_QDRANT__API_KEY /run/secrets/qdrant_api_key" in entrypoint
    assert "RAG_LLM__API_KEY /run/secrets/vllm_api_key" in entrypoint


# -- the app image ----------------------------------------------------------------------------


def test_the_app_image_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    assert sum(name == "FROM" for name, _ in instructions) >= 2
    users = [arguments for name, arguments in final_stage(instructions) if name == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    assert any(
        name == "COPY" and arguments.startswith("--from=") for name, arguments in instructions
    )


def test_the_app_image_sets_every_offline_switch() -> None:
    env = image_env(final_stage(dockerfile_instructions(DOCKERFILE)))
    assert {key: env.get(key) for key in OFFLINE_ENVIRONMENT} == OFFLINE_ENVIRONMENT


def test_the_app_image_installs_the_offline_spacy_model() -> None:
    runs = " ".join(args for name, args in dockerfile_instructions(DOCKERFILE) if name == "RUN")
    assert "pip install --no-build-isolation ./ops/packaging/spacy_model_alias" in runs
    alias = tomllib.loads(
        (PROJECT_ROOT / "ops/packaging/spacy_model_alias/pyproject.toml").read_text()
    )
    assert alias["project"]["name"] == "en_core_web_sm"


def test_the_entrypoint_the_services_run_through_is_the_one_the_image_installs() -> None:
    instructions = final_stage(dockerfile_instructions(DOCKERFILE))
    copies = [args for name, args in instructions if name == "COPY"]
    assert any(
        args.endswith("ops/packaging/docker/entrypoint.sh /usr/local/bin/rag-entrypoint")
        for args in copies
    ), copies
    assert ("ENTRYPOINT", '["rag-entrypoint"]') in instructions


def test_both_images_start_from_the_debian_base_and_take_the_mirror_build_arguments(
    stack: dict[str, Any], cpu_stack: dict[str, Any]
) -> None:
    builds = {name: stack["services"][name]["build"] for name in APP_SERVICES}
    builds["vllm (CPU profile)"] = cpu_stack["services"]["vllm"]["build"]
    for name, build in builds.items():
        dockerfile = PROJECT_ROOT / build["dockerfile"]
        instructions = dockerfile_instructions(dockerfile)
        assert instructions[0] == ("ARG", "BASE_IMAGE=rag-base:bookworm"), dockerfile.name
        stages = [args for name, args in instructions if name == "FROM"]
        assert len(stages) >= 2 and all(args.startswith("${BASE_IMAGE}") for args in stages)
        declared = {args.split("=")[0] for name, args in instructions if name == "ARG"}
        assert declared >= BUILD_ARGS, dockerfile.name
        assert set(build["args"]) == BUILD_ARGS, name
        for arg, value in build["args"].items():
            assert INTERPOLATION.fullmatch(value)["name"] == arg, f"{name}: {arg}"  # type: ignore[index]
        assert default_of(build["args"]["BASE_IMAGE"]) == "rag-base:bookworm"


def test_the_runtime_stages_carry_no_compiler_cache_or_build_ca() -> None:
    for dockerfile in (DOCKERFILE, VLLM_CPU_DOCKERFILE):
        instructions = dockerfile_instructions(dockerfile)
        runtime = final_stage(instructions)
        text = " ".join(args for _, args in runtime)
        assert "EXTRA_CA_CERT" not in text and "ca-certificates" not in text, dockerfile.name
        assert "pip install" not in text, dockerfile.name
        for name, args in runtime:
            if name == "RUN" and "apt-get install" in args:
                assert "rm -rf /var/lib/apt/lists/*" in args, dockerfile.name
        copies = [args for name, args in runtime if name == "COPY" and "--from=" in args]
        assert copies and all(" /opt/" in args or " /app" in args for args in copies)
        builder = instructions[: len(instructions) - len(runtime)]
        builder_runs = " ".join(args for name, args in builder if name == "RUN")
        assert re.search(r"pip uninstall -y pip\b", builder_runs), dockerfile.name
        assert "nvidia-" in builder_runs and "torchvision" in builder_runs, dockerfile.name
        runtime_words = text.split()
        for compiler in ("gcc", "g++", "build-essential"):
            assert compiler not in runtime_words, (dockerfile.name, compiler)
        assert not any(word.endswith("-dev") for word in runtime_words), dockerfile.name


def test_the_cpu_profiles_vllm_runs_eagerly_as_its_image_has_no_compiler(
    cpu_stack: dict[str, Any],
) -> None:
    assert "--enforce-eager" in cpu_stack["services"]["vllm"]["command"]


def test_the_app_image_has_the_ocr_languages_and_the_tools_the_parsers_run() -> None:
    runtime = " ".join(args for _, args in final_stage(dockerfile_instructions(DOCKERFILE)))
    for package in ("python3.11", "poppler-utils", "antiword", "libmagic1"):
        assert package in runtime.split(), package
    languages = set(re.findall(r"tesseract-ocr-([a-z]{3})\b", runtime))
    assert {"eng", "fra", "deu", "ita", "spa", "nld", "pol", "por"} <= languages
    runtime_stage = final_stage(dockerfile_instructions(DOCKERFILE))
    users = [args for name, args in runtime_stage if name == "USER"]
    assert "--uid 10001" in runtime and users == ["rag"]


# -- vLLM -------------------------------------------------------------------------------------


def test_vllm_serves_the_model_with_the_sizing_flags(stack: dict[str, Any]) -> None:
    vllm = stack["services"]["vllm"]
    command = [str(part) for part in vllm["command"]]
    assert command[0] == "/models/llm"
    tensor_parallel = flag_value(command, "--tensor-parallel-size")
    assert tensor_parallel == "${VLLM_TENSOR_PARALLEL_SIZE:-1}"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert [str(device["count"]) for device in devices] == [tensor_parallel]
    assert all("gpu" in device["capabilities"] for device in devices)
    memory = flag_value(command, "--gpu-memory-utilization")
    assert INTERPOLATION.fullmatch(memory)["name"] == "VLLM_GPU_MEMORY_UTILIZATION"  # type: ignore[index]
    assert 0.5 <= float(default_of(memory)) <= 0.95
    sequences = flag_value(command, "--max-num-seqs")
    assert INTERPOLATION.fullmatch(sequences)["name"] == "VLLM_MAX_NUM_SEQS"  # type: ignore[index]
    assert int(default_of(sequences)) >= 1
    assert "--enable-prefix-caching" in command
    assert (
        flag_value(command, "--served-model-name")
        == (stack["services"]["ui"]["environment"]["RAG_LLM__MODEL"])
    )


def test_vllm_flags_exist_in_the_vllm_release_the_suite_runs(
    any_stack: dict[str, Any], vllm_flags: str
) -> None:
    for name, service in any_stack["services"].items():
        if not name.startswith("vllm"):
            continue
        for flag in (str(part) for part in service["command"] if str(part).startswith("--")):
            assert re.search(rf"(^|\s){re.escape(flag)}[\s=,]", vllm_flags), f"{name}: {flag}"


def test_the_vllm_image_is_the_release_the_suite_runs(any_stack: dict[str, Any]) -> None:
    local = subprocess.run(
        [str(LLM_SERVER_PYTHON), "-c", "import vllm; print(vllm.__version__)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-2000:]
    version = local.stdout.strip()
    for name, service in any_stack["services"].items():
        if not name.startswith("vllm"):
            continue
        if str(service["image"]).startswith("rag-vllm-cpu:"):  # the CPU profile builds it
            assert (PROJECT_ROOT / service["build"]["dockerfile"]) == VLLM_CPU_DOCKERFILE, name
            assert f"vllm-cpu=={version}" in LLM_SERVER_REQUIREMENTS.read_text().split(), name
        else:
            assert service["image"] == f"vllm/vllm-openai:v{version}", name


def test_the_vllm_healthcheck_asks_the_path_the_local_server_answers(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    test = " ".join(stack["services"]["vllm"]["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:8000(/\S*?)'", test)
    assert url, test
    assert url[1] == urlparse(health_url(Settings(data_dir=tmp_path))).path


# -- Qdrant -----------------------------------------------------------------------------------


def test_qdrant_server_matches_the_client_release(any_stack: dict[str, Any]) -> None:
    client = importlib.metadata.version("qdrant-client").split(".")[:2]
    for name, service in any_stack["services"].items():
        if name.startswith("qdrant"):
            tag = str(service["image"]).removeprefix("qdrant/qdrant:v")
            assert tag.split(".")[:2] == client, f"{name}: {service['image']}"


def test_qdrant_reads_its_config_and_keeps_its_data_on_the_volumes(
    any_stack: dict[str, Any],
) -> None:
    config = load_yaml(QDRANT_CONFIG)
    assert config["telemetry_disabled"] is True
    assert isinstance(config["storage"]["on_disk_payload"], bool)
    assert config["service"]["enable_static_content"] is False
    for name, service in any_stack["services"].items():
        if not name.startswith("qdrant"):
            continue
        mounts = volume_targets(service)
        mounted = mounts["/qdrant/config/local.yaml"]
        assert (PROJECT_ROOT / mounted["source"]).resolve() == QDRANT_CONFIG.resolve(), name
        assert mounted["read_only"] is True, name
        for path in (config["storage"]["storage_path"], config["storage"]["snapshots_path"]):
            assert path in mounts and mounts[path]["source"] in any_stack["volumes"], name
        assert "--bootstrap" in service.get("command", []) or name == "qdrant"


# -- the front door ---------------------------------------------------------------------------


def test_the_front_door_runs_unprivileged_on_a_read_only_root(stack: dict[str, Any]) -> None:
    proxy = stack["services"]["proxy"]
    assert proxy["build"]["dockerfile"] == "ops/packaging/docker/proxy.Dockerfile"
    assert proxy["cap_drop"] == ["ALL"] and "cap_add" not in proxy
    assert proxy["read_only"] is True and "privileged" not in proxy
    assert "no-new-privileges:true" in proxy["security_opt"]
    assert any(str(entry).startswith("/tmp:") for entry in proxy["tmpfs"])
    instructions = dockerfile_instructions(PROXY_DOCKERFILE)
    users = [arguments for name, arguments in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    assert ("ARG", "BASE_IMAGE=rag-base:bookworm") in instructions
    assert [arguments for name, arguments in instructions if name == "FROM"] == ["${BASE_IMAGE}"]
    # Unprivileged ports inside: no capability is needed to bind them.
    assert all(int(port.rsplit(":", 1)[1]) >= 1024 for port in FRONT_DOOR_PORTS)


def test_only_the_front_door_image_holds_nginx() -> None:
    runs = " ".join(a for name, a in dockerfile_instructions(PROXY_DOCKERFILE) if name == "RUN")
    assert re.search(r"apt-get install .*\bnginx\b", runs)
    for dockerfile in (PROJECT_ROOT / "ops" / "packaging" / "docker").glob("*Dockerfile"):
        if dockerfile != PROXY_DOCKERFILE:
            assert "nginx" not in dockerfile.read_text(), dockerfile.name


def test_the_front_door_takes_the_operators_certificate_read_only_and_keeps_its_own(
    stack: dict[str, Any],
) -> None:
    mounts = volume_targets(stack["services"]["proxy"])
    supplied = mounts["/etc/rag-proxy/tls"]
    assert supplied["source"] == "${TLS_DIR:-./tls}" and supplied["read_only"] is True
    # Not a file of the repository the bundle would have to carry.
    assert all((PROJECT_ROOT / relative).is_file() for relative in bound_files(stack))
    assert mounts["/var/lib/rag-proxy"]["source"] in stack["volumes"]
    entrypoint = PROXY_ENTRYPOINT.read_text()
    assert 'supplied_dir="${PROXY_TLS_DIR:-/etc/rag-proxy/tls}"' in entrypoint
    assert 'state_dir="${PROXY_STATE_DIR:-/var/lib/rag-proxy}"' in entrypoint
    assert "-fingerprint -sha256" in entrypoint


def test_the_front_door_refuses_a_body_the_api_would_refuse(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    limit = stack["services"]["proxy"]["environment"]["MAX_BODY_BYTES"]
    assert int(limit) == Settings(data_dir=tmp_path).api.max_request_bytes
    assert "client_max_body_size @MAX_BODY_BYTES@;" in PROXY_TEMPLATE.read_text()


def nginx_locations(template: str) -> dict[str, str]:
    """`location` argument → its block's text, for the HTTPS server's flat locations."""
    return {
        match["where"].strip(): match["body"]
        for match in re.finditer(r"location (?P<where>[^{]+)\{(?P<body>[^}]*)\}", template)
    }


def test_the_front_door_sends_the_api_paths_to_the_api_and_the_rest_to_the_ui() -> None:
    locations = nginx_locations(PROXY_TEMPLATE.read_text())
    api_pattern = next(where for where in locations if where.startswith("~ "))
    matches = re.compile(api_pattern.removeprefix("~ ").strip()).search
    for path in ("/v1/chat/completions", "/v1/search", "/v1/models", "/mcp", "/mcp/"):
        assert matches(path), path
    for path in ("/", "/mcpx", "/v1", "/_stcore/health", "/app/static/x.js"):
        assert not matches(path), path
    assert "$api_upstream" in locations[api_pattern] and "$api_upstream" in locations["= /healthz"]
    assert "$ui_upstream" in locations["/"]
    # Streamed answers (server-sent events, MCP) pass on as they are written.
    assert "proxy_buffering off;" in locations[api_pattern]


def test_streamlits_websocket_is_upgraded_and_keeps_the_clients_host(
    stack: dict[str, Any],
) -> None:
    stream = nginx_locations(PROXY_TEMPLATE.read_text())["= /_stcore/stream"]
    assert "proxy_set_header Upgrade $http_upgrade;" in stream
    assert "proxy_set_header Connection $connection_upgrade;" in stream
    # A proxy_set_header in a location drops the server's: Streamlit compares Origin and Host.
    assert "proxy_set_header Host $http_host;" in stream
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in stream
    timeout = re.search(r"proxy_read_timeout (\d+)d;", stream)
    assert timeout and int(timeout[1]) >= 1


def security_headers() -> dict[str, str]:
    return {
        match[1].lower(): match[2]
        for match in re.finditer(
            r'add_header ([\w-]+) "([^"]*)" always;', PROXY_TEMPLATE.read_text()
        )
    }


def test_the_front_door_sets_the_security_headers() -> None:
    headers = security_headers()
    assert int(re.fullmatch(r"max-age=(\d+)", headers["strict-transport-security"])[1]) >= 31536000  # type: ignore[index]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    policy = dict(
        (part.split()[0], part.split()[1:])
        for part in headers["content-security-policy"].split(";")
        if part.strip()
    )
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    sources = [source for values in policy.values() for source in values]
    for source in sources:
        # Nothing from another origin: only keywords, hashes and local schemes.
        assert source.startswith("'") or source in ("data:", "blob:"), source
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]


def test_the_policy_allows_every_inline_script_of_the_streamlit_release() -> None:
    index = (Path(streamlit.__file__).parent / "static" / "index.html").read_text()
    inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", index, re.S)
    assert inline, "the page's inline script moved: check the policy in the browser"
    script_sources = security_headers()["content-security-policy"].split("script-src")[1]
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_sources.split(";")[0], body


def test_the_proxy_entrypoint_fills_every_placeholder_of_the_template() -> None:
    placeholders = set(re.findall(r"@([A-Z_]+)@", PROXY_TEMPLATE.read_text()))
    filled = set(re.findall(r"s\|@([A-Z_]+)@\|", PROXY_ENTRYPOINT.read_text()))
    assert placeholders and placeholders == filled


# -- our commands, run natively ---------------------------------------------------------------


def test_the_ingest_command_is_the_rag_script_watching_the_shares(stack: dict[str, Any]) -> None:
    ingest = stack["services"]["ingest"]
    command = [str(part) for part in ingest["command"]]
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    args = rag_parser().parse_args(command[1:])
    assert args.command == "ingest" and args.watch and args.watch > 0
    assert set(args.paths) <= set(volume_targets(ingest))
    assert ingest["stop_signal"] == "SIGINT"  # `rag ingest --watch` ends cleanly on it
    help_text = subprocess.run(
        [str(RAG), "ingest", "--help"], capture_output=True, text=True, timeout=120
    )
    assert help_text.returncode == 0 and "--watch" in help_text.stdout


def test_the_metrics_service_serves_what_its_healthcheck_asks(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    service = stack["services"]["metrics"]
    command = [str(part) for part in service["command"]]
    args = rag_parser().parse_args(command[1:])
    assert args.command == "metrics" and args.serve == 9108
    assert "ports" not in service and network_names(service) == {"backend"}
    port = free_port()
    native = [str(RAG), *[str(port) if part == "9108" else part for part in command[1:]]]
    native[native.index("0.0.0.0")] = "127.0.0.1"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "data")
    server = subprocess.Popen(native, env=env, stderr=subprocess.PIPE, text=True)
    try:
        check = service["healthcheck"]["test"]
        probe = check[3].replace("9108", str(port))
        deadline = time.monotonic() + 120
        while True:
            result = subprocess.run([sys.executable, "-c", probe], capture_output=True)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_ingest_healthcheck_reads_the_heartbeat_the_watcher_beats(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    service = stack["services"]["ingest"]
    test = [str(part) for part in service["healthcheck"]["test"]]
    assert test[:4] == ["CMD", "python", "-m", "ops.heartbeat"]
    heartbeat = Path(test[4])
    data_dir = Path(service["environment"]["RAG_DATA_DIR"])
    assert heartbeat.parent == Settings(data_dir=data_dir).run_dir
    max_age = float(flag_value(test, "--max-age"))
    assert max_age > Settings(data_dir=data_dir).ingest.file_timeout_seconds

    share = tmp_path / "share"
    share.mkdir()
    (share / "a.md").write_text("# Keys\n\nKeys are issued at the front desk.\n")
    data = tmp_path / "data"
    local_heartbeat = data / heartbeat.relative_to(data_dir)
    check = [sys.executable, "-m", "ops.heartbeat", str(local_heartbeat), *test[5:]]
    assert subprocess.run(check, cwd=PROJECT_ROOT, capture_output=True).returncode == 1

    watcher = subprocess.Popen(
        [str(RAG), "ingest", str(share), "--watch", "30", "--workers", "1"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RAG_")},
             "RAG_DATA_DIR": str(data)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert watcher.stderr is not None
    try:
        for line in watcher.stderr:
            if '"ingest_pass"' in line:
                break
        beaten = local_heartbeat.stat().st_mtime
        time.sleep(11)  # between passes the watcher beats every 10 s
        assert local_heartbeat.stat().st_mtime > beaten
        started = time.monotonic()
        alive = subprocess.run(check, cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert alive.returncode == 0, alive.stderr
        assert time.monotonic() - started < 2.0
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=60)
    finally:
        watcher.kill()
    an_hour_ago = time.time() - 3600  # a watcher that died or hangs beats no more
    os.utime(local_heartbeat, (an_hour_ago, an_hour_ago))
    stale = subprocess.run(check, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert stale.returncode == 1 and "stale heartbeat" in stale.stderr


def test_the_heartbeat_check_imports_nothing_but_the_standard_library(tmp_path: Path) -> None:
    probe = (
        "import sys; from ops import heartbeat; "
        f"heartbeat.main([{str(tmp_path / 'beat')!r}, '--max-age', '5']); "
        "print('\\n'.join(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    ours = {"settings", "ingest", "retrieval", "llm", "appliance", "ui"}
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert loaded - set(sys.stdlib_module_names) - {"__main__"} == {"ops"}
    assert not loaded & ours


def test_the_api_command_serves_what_its_healthcheck_asks(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    api = stack["services"]["api"]
    command = [str(part) for part in api["command"]]
    args = rag_parser().parse_args(command[1:])
    assert args.command == "serve" and args.host == "0.0.0.0"
    upstream = stack["services"]["proxy"]["environment"]["API_UPSTREAM"]
    assert upstream == f"api:{args.port}"
    assert {name: spec["condition"] for name, spec in api["depends_on"].items()} == {
        "qdrant": "service_healthy",
        "vllm": "service_healthy",
    }
    port = str(free_port())
    native = [str(RAG), *command[1:]]
    native[native.index("--port") + 1] = port
    native[native.index("--host") + 1] = "127.0.0.1"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    env |= OFFLINE_ENVIRONMENT | {"RAG_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(native, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        healthcheck = [str(part) for part in api["healthcheck"]["test"][1:]]
        assert healthcheck[:2] == ["python", "-c"] and ":8600/healthz'" in healthcheck[2]
        probe = [sys.executable, "-c", healthcheck[2].replace(":8600/", f":{port}/")]
        deadline = time.monotonic() + 120
        while True:
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            if result.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, result.stderr[-1000:]
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_ui_command_serves_streamlit_privately_and_passes_its_healthcheck(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    ui = stack["services"]["ui"]
    command = [str(part) for part in ui["command"]]
    assert command[:3] == ["streamlit", "run", "ui/app.py"]
    assert (PROJECT_ROOT / command[2]).is_file()
    assert flag_value(command, "--browser.gatherUsageStats") == "false"
    assert flag_value(command, "--server.headless") == "true"
    upstream = stack["services"]["proxy"]["environment"]["UI_UPSTREAM"]
    assert upstream == f"ui:{flag_value(command, '--server.port')}"
    port = str(free_port())
    native = list(command)
    native[native.index("--server.port") + 1] = port
    native[native.index("--server.address") + 1] = "127.0.0.1"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    env |= OFFLINE_ENVIRONMENT | {"RAG_DATA_DIR": str(tmp_path / "data")}
    streamlit = Path(sys.executable).parent / native[0]
    server = subprocess.Popen(
        [str(streamlit), *native[1:]], cwd=PROJECT_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        healthcheck = [str(part) for part in ui["healthcheck"]["test"][1:]]
        assert healthcheck[0] == "python"
        healthcheck = [
            sys.executable,
            *(arg.replace(":8501/", f":{port}/") for arg in healthcheck[1:]),
        ]
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(healthcheck, capture_output=True, text=True, timeout=30)
            if probe.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, probe.stderr[-1000:]
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- env template -----------------------------------------------------------------------------


def test_the_env_template_describes_every_setting() -> None:
    lines = ENV_TEMPLATE.read_text().splitlines()
    listed = {name: index for index, name, _, _ in template_settings(ENV_TEMPLATE)}
    setting_lines = set(listed.values())
    for name in setting_env_names(Settings):
        assert name in listed, f"{name} is missing from {ENV_TEMPLATE.name}"
        above = listed[name] - 1
        assert above >= 0 and above not in setting_lines, f"{name} has no description above it"
        description = lines[above].lstrip("#").strip()
        assert lines[above].startswith("#") and len(description.split()) >= 2, name
    assert set(listed) == set(setting_env_names(Settings)), "the template lists unknown settings"


def test_the_env_template_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [key for key in os.environ if key.startswith("RAG_")]:
        monkeypatch.delenv(key)
    for _, name, value, _ in template_settings(ENV_TEMPLATE):
        if value:
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.ingest.shares == ["/shares"]
    assert settings.access.group_map["finance-team"] == ["finance", "fin-ro"]
    assert settings.llm.base_url == "http://vllm:8000/v1"


def test_the_compose_environment_values_are_valid_settings(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [key for key in os.environ if key.startswith("RAG_")]:
        monkeypatch.delenv(key)
    for key, value in stack["services"]["ui"]["environment"].items():
        if key.startswith("RAG_"):
            with_defaults = INTERPOLATION.sub(lambda match: match["default"], str(value))
            monkeypatch.setenv(key, with_defaults)
    settings = Settings()
    assert settings.qdrant.url == "http://qdrant:6333"
    assert [str(network) for network in settings.ui.trusted_proxies] == [
        default_of(stack["networks"]["frontend"]["ipam"]["config"][0]["subnet"])
    ]
    assert settings.embedder_dir == Path("/models/embedder")


# -- the CPU profile ---------------------------------------------------------------------------


def test_the_cpu_profile_changes_only_what_a_host_without_gpus_needs(
    stack: dict[str, Any], cpu_stack: dict[str, Any]
) -> None:
    assert set(cpu_stack["services"]) == set(stack["services"])
    assert cpu_stack["services"]["qdrant"]["profiles"] == ["qdrant-server"]
    assert "profiles" not in stack["services"]["qdrant"]
    for name in ("vllm", *APP_SERVICES):
        assert "profiles" not in cpu_stack["services"][name], name
    assert cpu_stack["networks"] == stack["networks"]
    assert cpu_stack["secrets"] == stack["secrets"]
    for name, service in cpu_stack["services"].items():
        assert float(service["deploy"]["resources"]["limits"]["cpus"]) <= 2, name


def test_the_cpu_profile_serves_the_packaged_model_as_the_suite_does(
    cpu_stack: dict[str, Any], tmp_path: Path
) -> None:
    vllm = cpu_stack["services"]["vllm"]
    assert "reservations" not in vllm["deploy"]["resources"]
    command = [str(part) for part in vllm["command"]]
    settings = Settings(data_dir=tmp_path, models_dir=Path("/models"))
    suite = server_command(settings)
    assert flag_value(command, "--model") == str(settings.llm_model_dir)
    for flag in ("--max-model-len", "--dtype"):
        assert flag_value(command, flag) == flag_value(suite, flag), flag
    for flag in ("--enable-prefix-caching", "--disable-uvicorn-access-log"):
        assert flag in command and flag in suite, flag
    assert vllm["environment"]["VLLM_CPU_KVCACHE_SPACE"] == str(settings.llm.kv_cache_gib)
    served = flag_value(command, "--served-model-name")
    for name in APP_SERVICES:
        assert cpu_stack["services"][name]["environment"]["RAG_LLM__MODEL"] == served, name
    mounts = volume_targets(vllm)
    assert mounts["/models/llm"]["source"] == "${MODELS_DIR:-/srv/rag/models}/llm"
    assert mounts["/models/llm"]["read_only"] is True
    script = vllm["entrypoint"][2]
    assert "exec python -m vllm.entrypoints.openai.api_server" in script
    assert "VLLM_API_KEY=$$(cat /run/secrets/vllm_api_key)" in script
    assert "--api-key" not in command


def test_the_cpu_profile_apps_use_the_embedded_store_and_wait_for_what_they_need(
    cpu_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = cpu_stack["services"]
    for name in APP_SERVICES:
        assert "RAG_QDRANT__URL" not in services[name]["environment"], name
        assert "qdrant" not in services[name].get("depends_on", {}), name
    for name in ("ui", "api"):
        assert services[name]["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    for key in [key for key in os.environ if key.startswith("RAG_")]:
        monkeypatch.delenv(key)
    for key, value in services["ui"]["environment"].items():
        if key.startswith("RAG_"):
            monkeypatch.setenv(key, expand(str(value), {}))  # as Compose, with the defaults
    settings = Settings()
    assert settings.qdrant.url is None  # retrieval.build then opens the embedded engine
    assert settings.index_dir == Path("/data/index")


def test_the_production_apps_wait_for_the_services_they_call(stack: dict[str, Any]) -> None:
    services = stack["services"]
    healthy = {"condition": "service_healthy"}
    assert services["ingest"]["depends_on"] == {"qdrant": healthy}
    for name in ("ui", "api"):
        assert services[name]["depends_on"] == {"qdrant": healthy, "vllm": healthy}, name


def test_no_healthcheck_loads_the_stack(any_stack: dict[str, Any]) -> None:
    for name, service in any_stack["services"].items():
        test = [str(part) for part in service["healthcheck"]["test"][1:]]
        if test[:2] == ["python", "-m"]:
            assert test[2] == "ops.heartbeat", name
        elif test[0] in ("python", "python3"):
            assert test[1] == "-c" and test[2].startswith("import urllib.request;"), name
        else:
            assert test[:2] == ["bash", "-c"] and "/dev/tcp/127.0.0.1/" in test[2], name
        assert "rag" not in test, name


# -- scale-out and the header -----------------------------------------------------------------


def test_the_scale_file_changes_base_services_only_where_compose_replaces() -> None:
    scale = load_yaml(SCALE)
    base = load_yaml(COMPOSE)
    for name, service in scale["services"].items():
        if name in base["services"]:
            assert set(service) <= {"command", "environment"}, name


def test_scale_out_runs_qdrant_as_a_cluster_and_two_vllm_replicas(
    scaled: dict[str, Any],
) -> None:
    services = scaled["services"]
    nodes = {name: service for name, service in services.items() if name.startswith("qdrant")}
    assert len(nodes) >= 2
    first_uri = flag_value([str(part) for part in nodes["qdrant"]["command"]], "--uri")
    assert urlparse(first_uri).hostname == "qdrant"
    for name, node in nodes.items():
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true", name
        assert int(node["environment"]["QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR"]) >= 2
        if name != "qdrant":
            command = [str(part) for part in node["command"]]
            assert flag_value(command, "--bootstrap") == first_uri, name
            assert urlparse(flag_value(command, "--uri")).hostname == name
    text = SCALE.read_text()
    assert "shard_number" in text and "replication_factor" in text

    replicas = {name: service for name, service in services.items() if name.startswith("vllm")}
    assert len(replicas) >= 2
    taken = set(
        range(int(default_of(flag_value(services["vllm"]["command"], "--tensor-parallel-size"))))
    )
    for name, replica in replicas.items():
        if name == "vllm":
            continue
        assert "vllm" in replica["networks"]["backend"]["aliases"], name
        devices = replica["deploy"]["resources"]["reservations"]["devices"]
        gpus = {int(gpu) for device in devices for gpu in device["device_ids"]}
        tensor_parallel = int(
            flag_value([str(p) for p in replica["command"]], "--tensor-parallel-size")
        )
        assert len(gpus) == tensor_parallel and not gpus & taken, name
        taken |= gpus


@pytest.mark.parametrize("path", [COMPOSE, CPU], ids=lambda path: path.name)
def test_the_header_names_every_host_variable(path: Path) -> None:
    text = path.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    used = {match["name"] for match in INTERPOLATION.finditer(text)}
    assert used, "no host variables found"
    for name in used:
        assert name in header, f"{name} is used but not described in the header"

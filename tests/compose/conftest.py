"""The appliance as Docker Compose runs it, end to end (`make test-compose`).

One session builds the base image from the Debian mirror, builds and bundles the cpu
profile's images with `ops/bundle.sh`, installs the bundle into a fresh root with the
bundle's own `install.sh` (which verifies it, loads the images, writes env and secrets,
seals the networks, starts the stack, waits for health and runs its smoke test), and leaves
the stack running for the tests. The last fixture tears it down, volumes included.

Every step's time goes to tests/artifacts/compose/timings.json and the terminal summary,
with the images' sizes. A Docker data root kept between runs (tests/compose/engine.sh) lets
a re-run reuse built layers; a clean one only makes the run longer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from settings import PROJECT_ROOT
from tests.conftest import SAMPLE_SHARE, free_port

HERE = Path(__file__).parent
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts" / "compose"
BASE_IMAGE = "rag-base:bookworm"
PROJECT = "rag-appliance"
# Compose variables of the test's install, given in the environment of every command: the
# front door on free loopback ports, and bridges and a subnet of the test's own.
PORT_VARIABLES = ("HTTPS_PORT", "HTTP_PORT")
STACK_VARIABLES = {
    "PUBLISH_ADDRESS": "127.0.0.1",
    "BRIDGE_PREFIX": "ragtest",
    "FRONTEND_SUBNET": "172.31.253.0/28",
}
CA_FOLDER = Path("/usr/local/share/ca-certificates")
# The image tars, the build layers and the export's scratch copy of the largest image.
DISK_NEEDED_GB = 16
WHEEL_MIRROR_PORT = 38517


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.compose)


@dataclass
class Timings:
    """Seconds per step, in the order they ran, and the images' sizes."""

    steps: dict[str, float] = field(default_factory=dict)
    image_sizes_mb: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def record(self, step: str, seconds: float) -> None:
        """A step met again (a marker line printed several times) adds up."""
        self.steps[step] = round(self.steps.get(step, 0.0) + seconds, 1)
        self.save()

    def save(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        whole = round(time.monotonic() - self.started, 1)
        report = {"seconds": self.steps, "image_sizes_mb": self.image_sizes_mb, "total": whole}
        (ARTIFACTS / "timings.json").write_text(json.dumps(report, indent=2) + "\n")


_timings = Timings()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _timings.steps:
        _timings.save()
        terminalreporter.write_sep("-", "compose run: seconds per step, image sizes (MB)")
        for step, seconds in _timings.steps.items():
            terminalreporter.write_line(f"{step:<32} {seconds:>8.1f}")
        for image, size in _timings.image_sizes_mb.items():
            terminalreporter.write_line(f"{image:<32} {size:>8} MB")
        total = time.monotonic() - _timings.started
        terminalreporter.write_line(f"{'whole run':<32} {total:>8.1f}")


@pytest.fixture(scope="session")
def timings() -> Timings:
    return _timings


def run_timed(
    command: list[str],
    log: Path,
    markers: dict[str, str],
    timings: Timings,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    first_step: str | None = None,
) -> tuple[int, str]:
    """Run a command, its output into `log`, and time the stretches between marker lines:
    `markers` maps a part of an output line to the step it starts (the step before ends
    there); an empty step name takes the line's first words after the part, e.g. the image
    a "building" line names; `first_step` names the stretch before the first marker.
    Returns the exit status and the whole output."""
    started = time.monotonic()
    current, current_start = first_step, started
    lines: list[str] = []
    with log.open("w") as handle:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
        )
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            handle.flush()
            lines.append(line)
            step = _step_of(line, markers)
            if step is not None:
                now = time.monotonic()
                if current is not None:
                    timings.record(current, now - current_start)
                current, current_start = step, now
            if time.monotonic() - started > timeout:
                process.kill()
                break
        status = process.wait()
    if current is not None:
        timings.record(current, time.monotonic() - current_start)
    return status, "".join(lines)


def _step_of(line: str, markers: dict[str, str]) -> str | None:
    for part, name in markers.items():
        if part in line:
            rest = line.split(part, 1)[1].split()
            return name or f"{part.strip('[] ').split('] ')[-1]} {rest[0] if rest else ''}"
    return None


@pytest.fixture(scope="session")
def engine(timings: Timings) -> None:
    started = time.monotonic()
    result = subprocess.run(["bash", str(HERE / "engine.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    timings.record("engine", time.monotonic() - started)


@pytest.fixture(scope="session")
def base_image(engine: None, timings: Timings) -> str:
    started = time.monotonic()
    script = PROJECT_ROOT / "ops" / "packaging" / "docker" / "base.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    timings.record("base image", time.monotonic() - started)
    return BASE_IMAGE


def pip_find_links() -> list[Path]:
    """The local folders pip on this host finds wheels in (torch's CPU build is one)."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
        capture_output=True,
        text=True,
    )
    folders += listed.stdout.split() if listed.returncode == 0 else []
    return [Path(f) for f in dict.fromkeys(folders) if Path(f).is_dir()]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def wheel_mirror() -> Iterator[str | None]:
    """pip's find-links folder served on loopback, for builds on the host's network."""
    folders = pip_find_links()
    if not folders:
        yield None
        return
    handler = partial(_QuietHandler, directory=str(folders[0]))
    try:  # the same URL every run, so that the image builds' cached layers stay valid
        server = ThreadingHTTPServer(("127.0.0.1", WHEEL_MIRROR_PORT), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def extra_ca_file(folder: Path) -> Path | None:
    """The CAs this host added (a TLS-inspecting proxy's), in one PEM file."""
    certificates = sorted(CA_FOLDER.glob("*.crt"))
    if not certificates:
        return None
    bundle = folder / "extra-ca.pem"
    bundle.write_text("".join(path.read_text() for path in certificates))
    return bundle


@pytest.fixture(scope="session")
def bundle(
    base_image: str,
    wheel_mirror: str | None,
    timings: Timings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("bundle")
    if shutil.disk_usage(work).free < DISK_NEEDED_GB * 2**30:
        # Earlier builds leave their replaced images and builder stages behind, untagged;
        # they are the layer cache of the next build, so they go only when space is short.
        subprocess.run(["docker", "image", "prune", "--force"], capture_output=True)
    require_free_disk(work, DISK_NEEDED_GB)
    out = work / "bundle"
    command = ["bash", str(PROJECT_ROOT / "ops" / "bundle.sh"), str(out), "--profile", "cpu"]
    command += ["--build-arg", f"BASE_IMAGE={base_image}", "--build-network", "host"]
    if wheel_mirror:
        # torch's CPU wheel comes from the wheel folder, as for pip on this host: PyTorch's
        # own index is not reachable from here, and each lookup there would wait to time out.
        command += ["--build-arg", f"PIP_FIND_LINKS={wheel_mirror}"]
        command += ["--build-arg", "PIP_EXTRA_INDEX_URL="]
    ca = extra_ca_file(work)
    if ca is not None:
        command += ["--extra-ca-cert", str(ca)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    markers = {"[bundle] building ": "", "[bundle] saving ": "", "[bundle] copying ": "models"}
    started = time.monotonic()
    status, output = run_timed(
        command,
        ARTIFACTS / "bundle.log",
        markers,
        timings,
        timeout=3600,
        first_step="bundle: configs, installer, OCR packs",
    )
    assert status == 0, output[-3000:]
    timings.record("bundle (whole)", time.monotonic() - started)
    manifest = json.loads((out / "manifest.json").read_text())
    for image in manifest["images"]["references"]:
        inspected = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image["reference"]],
            capture_output=True,
            text=True,
        )
        if inspected.returncode == 0:
            timings.image_sizes_mb[image["reference"]] = int(inspected.stdout) // 2**20
    timings.save()
    try:
        yield out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def require_free_disk(folder: Path, gigabytes: int) -> None:
    free = shutil.disk_usage(folder).free / 2**30
    assert free >= gigabytes, (
        f"bundling needs {gigabytes} GB free under {folder} and in Docker's data root; "
        f"{free:.1f} GB are: free some space (docker image prune, old pytest folders) and re-run"
    )


@dataclass(frozen=True)
class Installation:
    root: Path
    bundle: Path
    files: tuple[str, ...]
    env: dict[str, str]
    https_port: int
    http_port: int
    report: dict[str, Any]

    def compose(
        self, *args: str, stdin: str | None = None, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose` over the installed files, with the install's variables."""
        command = ["docker", "compose", "--project-directory", str(self.root)]
        for name in self.files:
            command += ["-f", str(self.root / name)]
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin,
            timeout=timeout,
        )

    def rag(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        """`rag ... --json` in the running ingest container, through its entrypoint."""
        exec_rag = ["exec", "-T", "ingest", "rag-entrypoint", "rag", *args, "--json"]
        result = self.compose(*exec_rag, stdin=stdin, timeout=900)
        assert result.returncode == 0, f"rag {' '.join(args)}: {result.stderr[-1500:]}"
        parsed = json.loads(result.stdout)
        assert isinstance(parsed, dict)
        return parsed

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def remove_leftovers(project: str) -> None:
    """Containers, networks and volumes of an earlier run of the same project."""
    label = f"label=com.docker.compose.project={project}"
    for kind, lister in (
        ("container", ["docker", "ps", "-aq", "--filter", label]),
        ("network", ["docker", "network", "ls", "-q", "--filter", label]),
        ("volume", ["docker", "volume", "ls", "-q", "--filter", label]),
    ):
        ids = subprocess.run(lister, capture_output=True, text=True).stdout.split()
        if ids:
            remover = ["docker", "rm", "-f"] if kind == "container" else ["docker", kind, "rm"]
            subprocess.run([*remover, *ids], capture_output=True)


def install_env() -> dict[str, str]:
    env = {**os.environ, **STACK_VARIABLES}
    for variable in PORT_VARIABLES:
        env[variable] = str(free_port())
    return env


@pytest.fixture(scope="session")
def installed(
    bundle: Path, timings: Timings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    remove_leftovers(PROJECT)
    root = tmp_path_factory.mktemp("install") / "srv-rag"
    shares = root / "shares"
    shutil.copytree(SAMPLE_SHARE, shares)
    for path in [shares, *shares.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # The ingest service mounts the shares with rslave propagation, which needs a shared or
    # slave mount under them, as a systemd host's / is; this test host's is private.
    subprocess.run(["mount", "--bind", str(shares), str(shares)], check=True)
    subprocess.run(["mount", "--make-rshared", str(shares)], check=True)
    env = install_env()
    markers = {
        "[install] bundle intact": "install: host checks",
        "[install] loading ": "install: docker load",
        "[install] model ": "install: models, configuration, seal",
        "[install] starting the stack": "install: up to first healthy",
        "[install] smoke test": "install: smoke test (first answer)",
    }
    started = time.monotonic()
    command = ["bash", str(bundle / "install.sh"), str(bundle), "--install-dir", str(root)]
    status, output = run_timed(
        [*command, "--json"],
        ARTIFACTS / "install.log",
        markers,
        timings,
        env=env,
        timeout=3600,
        first_step="install: verify the bundle",
    )
    timings.record("install (whole)", time.monotonic() - started)
    report = json.loads(output[output.index("\n{") :]) if "\n{" in output else {}
    installation = Installation(
        root=root,
        bundle=bundle,
        files=tuple(report.get("compose_files_used") or _profile_files(bundle)),
        env=env,
        https_port=int(env["HTTPS_PORT"]),
        http_port=int(env["HTTP_PORT"]),
        report=report,
    )
    try:
        assert status == 0, output[-4000:]
        yield installation
    finally:
        logs = installation.compose("logs", "--no-color", "--tail", "200")
        (ARTIFACTS / "stack.log").write_text(logs.stdout + logs.stderr)
        installation.compose("down", "-v", "--remove-orphans")
        remove_leftovers(PROJECT)
        unseal = [sys.executable, "-m", "ops.packaging.airgap.seal", "remove"]
        subprocess.run([*unseal, "--bridge-prefix", STACK_VARIABLES["BRIDGE_PREFIX"]])
        subprocess.run(["umount", "--lazy", str(shares)])
        shutil.rmtree(root, ignore_errors=True)


def _profile_files(bundle: Path) -> tuple[str, ...]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return tuple(manifest["compose"]["files"])

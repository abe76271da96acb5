"""A real Active Directory domain for the tests: Samba's AD domain controller, provisioned
into a folder and run in a network namespace of the tests' own.

Samba ignores loopback addresses for its services, so the controller listens on one end of a
veth pair inside a network namespace, and the tests reach it from the other end; nothing else
is routed there. Each domain takes the first free slot of `SLOTS` (a namespace `ragtest-adN`
and the N-th /30 of 10.254.54.0/26), so test runs side by side do not meet. LDAPS and
StartTLS use a CA and a server certificate (for the address) that the fixture makes, as an
organisation's own CA would. The share `docs` is served with Samba's NTFS ACL store
(`acl_xattr`); its ACLs are set over SMB with smbcacls, as an administrator sets them from
Windows.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SLOTS = 16
REALM = "CORP.EXAMPLE.TEST"
WORKGROUP = "CORP"
BASE_DN = "DC=corp,DC=example,DC=test"
ADMIN = "Administrator"
ADMIN_PASSWORD = "Adm1n-Passw0rd!"
SHARE = "docs"


class DomainError(RuntimeError):
    pass


def run(command: list[str], check: bool = True, **options: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **options)  # type: ignore[call-overload]
    if check and done.returncode != 0:
        raise DomainError(f"{' '.join(command)}: {done.stdout}{done.stderr}")
    return str(done.stdout)


def samba_available() -> bool:
    return all(shutil.which(tool) for tool in ("samba", "samba-tool", "smbcacls", "ip"))


@dataclass(frozen=True)
class Slot:
    number: int

    @property
    def namespace(self) -> str:
        return f"ragtest-ad{self.number}"

    @property
    def host_link(self) -> str:
        return f"ragtest-ad{self.number}h"

    @property
    def dc_link(self) -> str:
        return f"ragtest-ad{self.number}n"

    @property
    def host_address(self) -> str:
        return f"10.254.54.{4 * self.number + 1}"

    @property
    def dc_address(self) -> str:
        return f"10.254.54.{4 * self.number + 2}"


@dataclass
class SambaDomain:
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    slot: Slot | None = None

    @property
    def address(self) -> str:
        """Where the controller listens (LDAP 389/636, SMB 445, Kerberos 88)."""
        assert self.slot is not None, "start() the domain first"
        return self.slot.dc_address

    @property
    def config(self) -> Path:
        return self.folder / "dc" / "etc" / "smb.conf"

    @property
    def share_path(self) -> Path:
        return self.folder / "share"

    @property
    def ca_file(self) -> Path:
        return self.folder / "tls" / "ca.pem"

    @property
    def domain_sid(self) -> str:
        return self.group_sid("Domain Users").rsplit("-", 1)[0]

    def start(self) -> None:
        self.slot = take_free_slot()
        self._provision()
        log = (self.folder / "samba.log").open("wb")
        # `ip netns exec` runs samba in a mount namespace of its own: there, /run/samba (where
        # smbd and winbindd find each other's sockets, whatever smb.conf says) is a folder of
        # this domain's, so domains running side by side do not answer each other's sign-ins.
        sockets = self.folder / "run"
        sockets.mkdir(exist_ok=True)
        samba = shlex.join(["samba", "-s", str(self.config), "-i", "--debug-stdout", "-d", "1"])
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.slot.namespace, "sh", "-c",
             f"mount --bind {shlex.quote(str(sockets))} /run/samba && exec {samba}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        for port in (636, 445, 389):
            self._wait_for(port)
        # The controller answers LDAP before its SMB server has read the domain: wait for it.
        deadline = time.monotonic() + 60
        while True:
            listing = subprocess.run(
                ["smbclient", f"//{self.address}/{SHARE}", "-U", f"{ADMIN}%{ADMIN_PASSWORD}",
                 "-c", "ls"],
                capture_output=True, text=True,
            )  # fmt: skip
            if listing.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise DomainError(f"the share did not come up: {listing.stdout}{listing.stderr}")
            time.sleep(1)

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        if self.slot is not None:
            remove_network(self.slot)
            self.slot = None

    def pause(self) -> None:
        """Freeze the controller and its file server (smbd runs in a session of its own): they
        accept nothing more and answer nothing (a hung server)."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        assert self.process is not None and self.slot is not None
        return [int(pid) for pid in run(["ip", "netns", "pids", self.slot.namespace]).split()]

    # -- the directory -----------------------------------------------------------------------

    def tool(self, *args: str) -> str:
        return run(["samba-tool", *args, "-s", str(self.config)])

    def add_user(self, name: str, password: str, given_name: str = "") -> None:
        self.tool("user", "create", name, password, f"--given-name={given_name or name}")

    def add_group(self, name: str) -> None:
        self.tool("group", "add", name)

    def add_members(self, group: str, *members: str) -> None:
        self.tool("group", "addmembers", group, ",".join(members))

    def remove_members(self, group: str, *members: str) -> None:
        self.tool("group", "removemembers", group, ",".join(members))

    def user_sid(self, name: str) -> str:
        return self._attribute("user", name, "objectSid")

    def group_sid(self, name: str) -> str:
        return self._attribute("group", name, "objectSid")

    def _attribute(self, kind: str, name: str, attribute: str) -> str:
        for line in self.tool(kind, "show", name, f"--attributes={attribute}").splitlines():
            if line.startswith(f"{attribute}:"):
                return line.split(":", 1)[1].strip()
        raise DomainError(f"{kind} {name} has no {attribute}")

    # -- the share ---------------------------------------------------------------------------

    def smbclient(self, *commands: str) -> str:
        return run(["smbclient", f"//{self.address}/{SHARE}", "-U", f"{ADMIN}%{ADMIN_PASSWORD}",
                    "-c", "; ".join(commands)])  # fmt: skip

    def put(self, local: Path, remote: str) -> None:
        """Upload a file over SMB (it inherits its folder's ACL, as on Windows)."""
        self.smbclient(f'put "{local}" "{remote}"')

    def mkdir(self, remote: str) -> None:
        self.smbclient(f'mkdir "{remote}"')

    def set_sddl(self, remote: str, sddl: str) -> None:
        """Replace the security descriptor of `remote` over SMB; `sddl` in Windows' SDDL, for
        example `D:P(A;OICI;FA;;;DA)(A;;FR;;;S-1-5-21-…)` (P: inheritance broken)."""
        run(["smbcacls", f"//{self.address}/{SHARE}", remote, "-U", f"{ADMIN}%{ADMIN_PASSWORD}",
             "--sddl", "--set", sddl])  # fmt: skip

    def sddl_of(self, remote: str) -> str:
        return run(["smbcacls", f"//{self.address}/{SHARE}", remote,
                    "-U", f"{ADMIN}%{ADMIN_PASSWORD}", "--sddl"]).strip()  # fmt: skip

    # -- setting up --------------------------------------------------------------------------

    def _provision(self) -> None:
        shutil.rmtree(self.folder / "dc", ignore_errors=True)
        self.share_path.mkdir(parents=True, exist_ok=True)
        # smbd serves each account as its own uid: the folders down to the share (pytest
        # makes its temporary folders 0700) must let every account through.
        for folder in (self.share_path, *self.share_path.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)
        tls = make_certificates(self.folder / "tls", self.address)
        run(["samba-tool", "domain", "provision", f"--targetdir={self.folder / 'dc'}",
             f"--realm={REALM}", f"--domain={WORKGROUP}", "--server-role=dc",
             "--dns-backend=NONE", f"--adminpass={ADMIN_PASSWORD}", "--use-rfc2307",
             "--host-name=dc1", f"--option=interfaces={self.address}",
             "--option=bind interfaces only=yes"])  # fmt: skip
        config = self.config.read_text()
        config = config.replace(
            "[global]\n",
            "[global]\n"
            f"\ttls keyfile = {tls / 'server.key'}\n"
            f"\ttls certfile = {tls / 'server.pem'}\n"
            f"\ttls cafile = {tls / 'ca.pem'}\n"
            "\tserver services = -dnsupdate\n"
            f"\tpid directory = {self.folder / 'dc'}\n"
            f"\tlog file = {self.folder / 'log.%m'}\n",
        )
        config += f"\n[{SHARE}]\n\tpath = {self.share_path}\n\tread only = no\n"
        self.config.write_text(config)
        # Short lockouts and no password history, so the bad-input tests run quickly.
        self.tool("domain", "passwordsettings", "set", "--account-lockout-threshold=3",
                  "--account-lockout-duration=1", "--reset-account-lockout-after=1",
                  "--history-length=0", "--min-pwd-age=0")  # fmt: skip

    def _wait_for(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise DomainError(
                    f"samba exited: {(self.folder / 'samba.log').read_text()[-2000:]}"
                )
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((self.address, port)) == 0:
                    return
            time.sleep(0.5)
        raise DomainError(f"samba does not listen on {self.address}:{port}")


def take_free_slot() -> Slot:
    """The first slot whose namespace could be made, with its veth pair set up."""
    for number in range(SLOTS):
        slot = Slot(number)
        made = subprocess.run(["ip", "netns", "add", slot.namespace], capture_output=True)
        if made.returncode == 0:
            try:
                make_network(slot)
            except DomainError:
                remove_network(slot)
                raise
            return slot
    raise DomainError(f"all {SLOTS} test namespaces are taken: `ip netns list`, delete stale ones")


def make_network(slot: Slot) -> None:
    run(["ip", "link", "add", slot.host_link, "type", "veth", "peer", "name", slot.dc_link,
         "netns", slot.namespace])  # fmt: skip
    run(["ip", "addr", "add", f"{slot.host_address}/30", "dev", slot.host_link])
    run(["ip", "link", "set", slot.host_link, "up"])
    inside = ["ip", "netns", "exec", slot.namespace]
    run([*inside, "ip", "addr", "add", f"{slot.dc_address}/30", "dev", slot.dc_link])
    run([*inside, "ip", "link", "set", slot.dc_link, "up"])
    run([*inside, "ip", "link", "set", "lo", "up"])


def remove_network(slot: Slot) -> None:
    run(["ip", "link", "delete", slot.host_link], check=False)
    run(["ip", "netns", "delete", slot.namespace], check=False)


def make_certificates(folder: Path, address: str) -> Path:
    """A CA and a server certificate for `address` (PEM files ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dc1.corp.example.test")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName("dc1.corp.example.test"),
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    key_file = folder / "server.key"
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))  # fmt: skip
    key_file.chmod(0o600)
    return folder

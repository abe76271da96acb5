"""The whole chain as an administrator sets it up, by settings only: a Samba Active Directory
domain, its share read over SMB with the NTFS ACLs set on it through the protocol, and domain
users who sign in through the directory. For every user and every document, search, the
library, answers' citations and the API show the document exactly when the share lets the
user read it; a group change takes effect at the next sign-in, and an ACL change on the share
at the next ingest, without reading the file again.

The domain (names prefixed `mx-`, so other modules' users do not meet these):
    MX-Finance is a member of MX-Staff (nesting).
    ann: MX-Finance.  ben: MX-Staff and MX-Interns.  cid: MX-HR.  dora: no group.  eve: MX-Staff.
The share `docs`, ACLs set with smbcacls, files uploaded afterwards so that they inherit:
    finance/   allow MX-Finance                      (inheritance broken)
    staff/     allow MX-Staff, deny MX-Interns      (inheritance broken; files inherit both)
    hr/        allow MX-HR                           (inheritance broken)
    public/    allow Authenticated Users             (inheritance broken)
    private/ann-notes.txt  allow ann only, on the file itself (inheritance broken)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, expect

from appliance.actor import Actor
from appliance.core import Appliance
from appliance.root import Parts
from settings import PROJECT_ROOT, Settings
from tests.browser.conftest import (
    Account,
    BrowserSession,
    BrowserUI,
    Screenshots,
    Traffic,
)
from tests.browser.test_ui_browser import ask, open_library, sign_in, source
from tests.conftest import free_port
from tests.directory.samba_domain import ADMIN, ADMIN_PASSWORD, BASE_DN, WORKGROUP, SambaDomain

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts" / "directory"
PASSWORD = "Matr1x-Passw0rd!"
GROUPS = ("MX-Finance", "MX-Staff", "MX-Interns", "MX-HR")
MEMBERS = {
    "MX-Staff": ("MX-Finance", "mx-ben", "mx-eve"),
    "MX-Finance": ("mx-ann",),
    "MX-Interns": ("mx-ben",),
    "MX-HR": ("mx-cid",),
}
USERS = ("mx-ann", "mx-ben", "mx-cid", "mx-dora", "mx-eve")


@dataclass(frozen=True)
class Document:
    path: str
    text: str
    question: str
    readers: frozenset[str]


DOCUMENTS = (
    Document(
        "finance/budget.txt",
        "Budget memo. The Kestrel harbour crane replacement is funded with 4.2 million euros "
        "in 2027, approved by the finance committee.",
        "How much funding does the Kestrel harbour crane replacement get?",
        frozenset({"mx-ann"}),
    ),
    Document(
        "staff/handbook.txt",
        "Staff handbook. Under the Osprey flexible working scheme, staff may work from home "
        "two days per week after their probation.",
        "How many remote days does the Osprey flexible working scheme allow?",
        frozenset({"mx-ann", "mx-eve"}),
    ),
    Document(
        "hr/plan.txt",
        "HR plan. The Heron recruitment drive will hire twelve nurses for the night shift "
        "before the summer.",
        "How many nurses will the Heron recruitment drive hire?",
        frozenset({"mx-cid"}),
    ),
    Document(
        "public/canteen.txt",
        "Canteen notice. The Puffin canteen serves vegetarian lasagne every Thursday from noon.",
        "What does the Puffin canteen serve on Thursdays?",
        frozenset(USERS),
    ),
    Document(
        "private/ann-notes.txt",
        "Private notes. The Gannet archive room opens with the access code 7731.",
        "What is the access code of the Gannet archive room?",
        frozenset({"mx-ann"}),
    ),
)


@dataclass
class Setup:
    domain: SambaDomain
    settings: Settings
    appliance: Appliance
    root: str  # the smb:// ingest root
    sids: dict[str, str]

    def sign_in(self, name: str, password: str = PASSWORD) -> Actor:
        result = self.appliance.sign_in(name, password, "192.0.2.7")
        assert result.user is not None, f"{name}: {result.outcome}"
        return self.appliance.actor_of(result.user, "ui")

    def visible(self, actor: Actor, as_set_up: bool = True) -> dict[str, str]:
        """Each document's path → the path of the best hit its question gets the actor (or
        ''); `as_set_up`: also check that no hit is a document the set-up keeps from them."""
        found = {}
        for document in DOCUMENTS:
            hits = self.appliance.search(actor, document.question, k=10)
            paths = [hit.chunk.path for hit in hits]
            if as_set_up:
                self.check_only_readable(actor, paths)
            found[document.path] = paths[0] if paths else ""
        return found

    def check_only_readable(self, actor: Actor, paths: list[str]) -> None:
        allowed = {self.url(d.path) for d in DOCUMENTS if actor.name.lower() in d.readers}
        leaked = sorted(set(paths) - allowed)
        assert not leaked, f"{actor.name} was shown {leaked}"

    def url(self, path: str) -> str:
        return f"{self.root}/{path}"


def write_secret(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def setup(samba_domain: SambaDomain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    domain = samba_domain
    for group in GROUPS:
        domain.add_group(group)
    for user in USERS:
        domain.add_user(user, PASSWORD)
    for group, members in MEMBERS.items():
        domain.add_members(group, *members)
    sids = {name: domain.group_sid(name) for name in GROUPS}
    sids |= {name: domain.user_sid(name) for name in USERS}
    administrator = f"{domain.domain_sid}-500"
    admin_entry = f"(A;OICI;FA;;;{administrator})"
    folders = {
        "mx/finance": f"(A;OICI;FR;;;{sids['MX-Finance']})",
        "mx/staff": f"(A;OICI;FR;;;{sids['MX-Staff']})(D;OICI;FR;;;{sids['MX-Interns']})",
        "mx/hr": f"(A;OICI;FR;;;{sids['MX-HR']})",
        "mx/public": "(A;OICI;FR;;;S-1-5-11)",
        "mx/private": admin_entry.replace("FA", "FR"),
    }
    domain.mkdir("mx")
    for folder, entries in folders.items():
        domain.mkdir(folder)
        domain.set_sddl(folder, f"D:P{admin_entry}{entries}")
    local = tmp_path_factory.mktemp("matrix-files")
    for document in DOCUMENTS:
        source = local / document.path.replace("/", "-")
        source.write_text(document.text)
        domain.put(source, f"mx/{document.path}")
    domain.set_sddl("mx/private/ann-notes.txt",
                    f"D:P(A;;FA;;;{administrator})(A;;FR;;;{sids['mx-ann']})")  # fmt: skip

    secrets = tmp_path_factory.mktemp("matrix-secrets")
    password_file = write_secret(secrets, "admin-password", ADMIN_PASSWORD)
    data = tmp_path_factory.mktemp("matrix-data")
    environment = {
        "RAG_DATA_DIR": str(data),
        "RAG_IDENTITY__PROVIDER": "ldap",
        "RAG_IDENTITY__LDAP__URL": f"ldaps://{domain.address}:636",
        "RAG_IDENTITY__LDAP__CA_FILE": str(domain.ca_file),
        "RAG_IDENTITY__LDAP__BASE_DN": BASE_DN,
        "RAG_IDENTITY__LDAP__BIND_DN": f"CN={ADMIN},CN=Users,{BASE_DN}",
        "RAG_IDENTITY__LDAP__BIND_PASSWORD_FILE": str(password_file),
        "RAG_IDENTITY__LDAP__REFRESH_SECONDS": "0",
        "RAG_SMB__USERNAME": ADMIN,
        "RAG_SMB__DOMAIN": WORKGROUP,
        "RAG_SMB__PASSWORD_FILE": str(password_file),
    }
    with pytest.MonkeyPatch.context() as env:
        for name, value in environment.items():
            env.setenv(name, value)
        settings = Settings()
        appliance = Appliance(Parts(settings))
        root = f"smb://{domain.address}/docs/mx"
        report = appliance.ingest(Actor.operator(), [root])
        assert report.failed == [], report.failed
        assert report.indexed == len(DOCUMENTS)
        try:
            yield Setup(domain, settings, appliance, root, sids)
        finally:
            appliance.close()


def test_each_domain_user_finds_exactly_what_the_share_lets_them_read(setup: Setup) -> None:
    matrix: dict[str, dict[str, bool]] = {}
    for user in USERS:
        actor = setup.sign_in(user)
        best = setup.visible(actor)
        row = {}
        for document in DOCUMENTS:
            readable = user in document.readers
            found = best[document.path] == setup.url(document.path)
            assert found == readable, (
                f"{user} {'should' if readable else 'should not'} find {document.path}"
            )
            row[document.path] = found
        matrix[user] = row
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "matrix.json").write_text(json.dumps(matrix, indent=2, sort_keys=True))


def test_the_library_lists_each_user_exactly_their_documents(setup: Setup) -> None:
    for user in USERS:
        actor = setup.sign_in(user)
        listed = {entry.path for entry in setup.appliance.parts.catalog.documents(actor.scope)}
        expected = {setup.url(d.path) for d in DOCUMENTS if user in d.readers}
        assert listed == expected, user


def test_the_api_with_a_domain_users_token_returns_only_their_documents(setup: Setup) -> None:
    from ops.api.app import create_app

    client = TestClient(create_app(setup.appliance))
    for user in ("mx-ann", "mx-ben"):
        _, secret = setup.appliance.create_token(Actor.operator(), user)
        for document in DOCUMENTS:
            reply = client.post(
                "/v1/search",
                headers={"Authorization": f"Bearer {secret}"},
                json={"query": document.question, "k": 10},
            )
            assert reply.status_code == 200, reply.text
            paths = [hit["path"] for hit in reply.json()["hits"]]
            setup.check_only_readable(setup.appliance.actor_of(
                setup.appliance.known_user(user), "api"), paths)  # fmt: skip
            assert (paths[:1] == [setup.url(document.path)]) == (user in document.readers)


@pytest.mark.integration
def test_answers_cite_only_documents_the_asker_may_read(
    setup: Setup, llm_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_LLM__PORT", str(llm_settings.llm.port))
    appliance = Appliance(Parts(Settings()))
    budget = DOCUMENTS[0]
    try:
        for user, may_read in (("mx-ann", True), ("mx-ben", False)):
            actor = setup.sign_in(user)
            answer = appliance.ask(actor, budget.question).answer
            cited = {citation.path for citation in answer.citations}
            setup.check_only_readable(actor, sorted(cited))
            if may_read:
                assert cited == {setup.url(budget.path)}, answer.as_json()
                assert "4.2" in answer.text
            else:
                assert "4.2" not in answer.text, answer.as_json()
    finally:
        appliance.close()


def test_a_group_change_takes_effect_at_the_next_sign_in(setup: Setup) -> None:
    budget = DOCUMENTS[0]
    before = setup.sign_in("mx-dora")
    assert setup.visible(before)[budget.path] != setup.url(budget.path)
    setup.domain.add_members("MX-Finance", "mx-dora")
    try:
        after = setup.sign_in("mx-dora")
        assert setup.visible(after, as_set_up=False)[budget.path] == setup.url(budget.path)
    finally:
        setup.domain.remove_members("MX-Finance", "mx-dora")
    assert setup.visible(setup.sign_in("mx-dora"))[budget.path] != setup.url(budget.path)


def test_an_acl_change_on_the_share_takes_effect_at_the_next_ingest_without_reparsing(
    setup: Setup,
) -> None:
    handbook = DOCUMENTS[1]
    ben = setup.sign_in("mx-ben")
    assert setup.visible(ben)[handbook.path] != setup.url(handbook.path)
    administrator = f"{setup.domain.domain_sid}-500"
    remote = f"mx/{handbook.path}"
    setup.domain.set_sddl(remote, f"D:P(A;;FA;;;{administrator})"
                                  f"(A;;FR;;;{setup.sids['MX-Staff']})")  # fmt: skip
    try:
        report = setup.appliance.ingest(Actor.operator(), [setup.root])
        assert report.failed == [] and report.pages == 0 and report.unchanged == len(DOCUMENTS)
        ben = setup.sign_in("mx-ben")
        assert setup.visible(ben, as_set_up=False)[handbook.path] == setup.url(handbook.path)
    finally:
        setup.domain.set_sddl(remote, f"D:P(A;;FA;;;{administrator})"
                                      f"(A;;FR;;;{setup.sids['MX-Staff']})"
                                      f"(D;;FR;;;{setup.sids['MX-Interns']})")  # fmt: skip
        setup.appliance.ingest(Actor.operator(), [setup.root])
    assert setup.visible(setup.sign_in("mx-ben"))[handbook.path] != setup.url(handbook.path)


@pytest.mark.integration
def test_two_domain_users_sign_in_in_the_browser_and_each_sees_their_documents(
    setup: Setup, chromium: Browser, llm_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ops.stack import start_ui, ui_process

    monkeypatch.setenv("RAG_LLM__PORT", str(llm_settings.llm.port))
    monkeypatch.setenv("RAG_UI__PORT", str(free_port()))
    settings = Settings()
    url = start_ui(settings)
    accounts = [Account(user, PASSWORD) for user in ("mx-ann", "mx-cid")]
    ui = BrowserUI(url, settings, *accounts, Account(ADMIN, ADMIN_PASSWORD))
    try:
        for account in accounts:
            traffic = Traffic(ui.origin)
            context = chromium.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
            context.set_default_timeout(30_000)
            folder = ARTIFACTS / f"browser-{account.name}"
            folder.mkdir(parents=True, exist_ok=True)
            session = BrowserSession(
                traffic.watched_page(context), traffic, Screenshots(folder), ui
            )
            try:
                page = sign_in(session, account)
                listed = set(open_library(page))
                session.shots.take(page, "library")
                readable = {Path(d.path).name for d in DOCUMENTS if account.name in d.readers}
                assert listed == readable, account.name
                if account.name == "mx-ann":
                    page.get_by_role("link", name="Chat").first.click()
                    ask(page, DOCUMENTS[0].question)
                    expect(source(page, "budget.txt")).to_be_visible()
                    session.shots.take(page, "answer")
                traffic.assert_only_local()
            finally:
                context.close()
    finally:
        ui_process(settings).stop()


def test_a_folder_of_the_share_filters_a_search(setup: Setup) -> None:
    from retrieval.store import SearchFilters

    ann = setup.sign_in("mx-ann")
    folder = SearchFilters(folder=setup.url("finance/"))
    hits = setup.appliance.search(ann, "budget handbook canteen notes", k=10, filters=folder)
    assert {hit.chunk.path for hit in hits} == {setup.url(DOCUMENTS[0].path)}


def test_the_acls_samba_keeps_on_disk_read_as_the_ones_set_over_smb(setup: Setup) -> None:
    """What a file server running the appliance itself reads: Samba's `security.NTACL`."""
    import os

    from ingest import ntacl

    administrator = f"{setup.domain.domain_sid}-500"
    expected = {
        "finance/budget.txt": ({administrator, setup.sids["MX-Finance"]}, set()),
        "staff/handbook.txt": ({administrator, setup.sids["MX-Staff"]}, {setup.sids["MX-Interns"]}),
        "hr/plan.txt": ({administrator, setup.sids["MX-HR"]}, set()),
        "public/canteen.txt": ({administrator, "S-1-5-11"}, set()),
        "private/ann-notes.txt": ({administrator, setup.sids["mx-ann"]}, set()),
    }
    for path, (allowed, denied) in expected.items():
        stored = os.getxattr(setup.domain.share_path / "mx" / path, ntacl.SAMBA_NTACL_ATTRIBUTE)
        descriptor = ntacl.read_descriptor(ntacl.SAMBA_NTACL_ATTRIBUTE, stored)
        entries = ntacl.named(descriptor, ntacl.READ)
        assert (set(entries.allowed or ()), set(entries.denied)) == (allowed, denied), path


def test_the_doctor_checks_the_directory_and_the_share_account(
    setup: Setup, tmp_path: Path
) -> None:
    from ops.health import check_identity, check_smb_account

    identity = check_identity(setup.settings)
    assert identity["ok"], identity
    assert check_smb_account(setup.settings)["ok"]
    wrong = write_secret(tmp_path, "wrong-password", "not-the-password")
    ldap = setup.settings.identity.ldap.model_copy(update={"bind_password_file": wrong})
    refused = setup.settings.model_copy(
        update={"identity": setup.settings.identity.model_copy(update={"ldap": ldap})}
    )
    failed = check_identity(refused)
    assert not failed["ok"] and "service account" in failed["detail"], failed
    wrong.chmod(0o644)
    smb = setup.settings.smb.model_copy(update={"password_file": wrong})
    loose = check_smb_account(setup.settings.model_copy(update={"smb": smb}))
    assert not loose["ok"] and "chmod 600" in loose["detail"]

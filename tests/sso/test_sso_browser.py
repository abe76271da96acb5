"""Single sign-on as a person does it: a real headless Chromium, the UI as `rag up` starts it,
and the real OpenID provider's login form."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from settings import Settings
from tests.browser.conftest import ARTIFACTS, Screenshots, Traffic
from tests.sso.conftest import OpenIdProvider

pytestmark = pytest.mark.integration

SSO_BUTTON = "Sign in with single sign-on"


@dataclass(frozen=True)
class SsoUI:
    url: str
    settings: Settings


@pytest.fixture(scope="module")
def sso_ui(
    openid_provider: OpenIdProvider, sso_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SsoUI]:
    """The UI on the port the provider sends browsers back to, over a copy of the index."""
    from ops.stack import start_ui, ui_process

    data_dir = tmp_path_factory.mktemp("sso-ui") / "data"
    shutil.copytree(sso_data, data_dir, ignore=shutil.ignore_patterns("run"))
    settings = openid_provider.settings(
        data_dir, ui={"port": openid_provider.ui_port, "startup_timeout_seconds": 120}
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in openid_provider.environment().items():
                env.setenv(name, value)
            env.setenv("RAG_UI__PORT", str(openid_provider.ui_port))
            url = start_ui(settings)
        assert url == openid_provider.redirect_url
        yield SsoUI(url, settings)
    finally:
        ui_process(settings).stop()


@dataclass
class TwoOrigins(Traffic):
    """The page may reach the UI and the provider, nothing else."""

    provider: str = ""

    def is_local(self, url: str) -> bool:
        return super().is_local(url) or urlsplit(url).netloc == self.provider


@pytest.fixture
def page(
    chromium: Browser,
    sso_ui: SsoUI,
    openid_provider: OpenIdProvider,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Page, Screenshots]]:
    traffic = TwoOrigins(
        f"127.0.0.1:{sso_ui.settings.ui.port}", provider=urlsplit(openid_provider.issuer).netloc
    )
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    context = chromium.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    try:
        yield traffic.watched_page(context), Screenshots(folder)
    finally:
        context.close()
    traffic.assert_only_local()


def sign_in_through_the_provider(page: Page, url: str, login: str, shots: Screenshots) -> None:
    page.goto(url)
    button = page.get_by_role("link", name=SSO_BUTTON)
    expect(button).to_be_visible(timeout=60_000)
    href = button.get_attribute("href") or ""
    query = parse_qs(urlsplit(href).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    shots.take(page, "sign-in-page")
    button.click()
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any password")
    shots.take(page, "provider-login")
    page.get_by_role("button", name="Sign-in").click()


def library_names(page: Page) -> list[str]:
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_role("link", name="Library").click()
    expect(page.get_by_role("heading", name="Documents")).to_be_visible()
    names = page.locator('[data-testid="stDataFrame"]').first.locator(
        '[role="gridcell"][aria-colindex="1"]'
    )
    expect(names.first).to_be_attached(timeout=30_000)
    return sorted(name.strip() for name in names.all_text_contents())


def test_a_user_signs_in_through_the_provider_and_reads_their_groups_documents(
    page: tuple[Page, Screenshots], sso_ui: SsoUI
) -> None:
    browser, shots = page
    sign_in_through_the_provider(browser, sso_ui.url, "erika", shots)
    sidebar = browser.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Signed in as erika")).to_be_visible(timeout=60_000)
    assert "code=" not in browser.url and "state=" not in browser.url
    shots.take(browser, "signed-in")
    assert library_names(browser) == ["budget-2027.md", "canteen.md"]
    shots.take(browser, "library")


def test_a_user_whose_token_has_no_groups_reads_only_what_everyone_may(
    page: tuple[Page, Screenshots], sso_ui: SsoUI
) -> None:
    browser, shots = page
    sign_in_through_the_provider(browser, sso_ui.url, "max", shots)
    sidebar = browser.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Signed in as max")).to_be_visible(timeout=60_000)
    assert library_names(browser) == ["canteen.md"]
    shots.take(browser, "library")


def test_coming_back_with_a_used_state_does_not_sign_in(
    page: tuple[Page, Screenshots], sso_ui: SsoUI
) -> None:
    browser, shots = page
    back: list[str] = []
    browser.on(
        "request",
        lambda request: (
            back.append(request.url)
            if request.url.startswith(sso_ui.url) and "state=" in request.url
            else None
        ),
    )
    sign_in_through_the_provider(browser, sso_ui.url, "hanna", shots)
    sidebar = browser.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Signed in as hanna")).to_be_visible(timeout=60_000)
    assert back, "the provider did not send the browser back with a state"
    sidebar.get_by_role("button", name="Sign out").click()
    browser.goto(back[0])  # the same code and state again
    expect(browser.get_by_text("Single sign-on did not complete")).to_be_visible(timeout=60_000)
    expect(sidebar.get_by_text("Signed in as hanna")).to_have_count(0)
    shots.take(browser, "replayed-state")


def test_a_browser_without_the_sign_ins_key_is_not_signed_in(
    page: tuple[Page, Screenshots], sso_ui: SsoUI
) -> None:
    """Login CSRF: a forger signs in at the provider and sends the link back to the appliance
    to someone else, whose browser lacks the key the sign-in's own browser keeps. Here the
    browser loses its key between the button and the provider's return."""
    browser, shots = page
    browser.goto(sso_ui.url)
    button = browser.get_by_role("link", name=SSO_BUTTON)
    expect(button).to_be_visible(timeout=60_000)
    assert any(c["name"] == "rag-sso-key" for c in browser.context.cookies(sso_ui.url))
    browser.context.clear_cookies()
    button.click()
    browser.locator('input[name="login"]').fill("hanna")
    browser.locator('input[name="password"]').fill("any password")
    browser.get_by_role("button", name="Sign-in").click()
    expect(browser.get_by_text("Single sign-on did not complete")).to_be_visible(timeout=60_000)
    expect(browser.get_by_text("Signed in as hanna")).to_have_count(0)
    shots.take(browser, "no-key")

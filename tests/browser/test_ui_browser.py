"""Users' paths through the UI in a real headless Chromium, against the real index and LLM."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import MARKDOWN_NAMED_FILE, PLANTED_FILE, Account, BrowserSession

pytestmark = pytest.mark.integration

HARBOUR_QUESTION = "What is the approved budget of the Harbour Renovation Project?"
RESTRICTED_QUESTION = "What is the approved budget of the IT Modernisation Programme?"
MEMO = "harbour-renovation-memo.png"
MINUTES = "board-minutes-2026-03.pdf"
MINUTES_FACT = "1,980,000"  # said only in the board minutes
ANSWER_TIMEOUT_SECONDS = 240.0  # the first question also loads the embedder
CURSOR = "▌"


def chat_input(page: Page) -> Locator:
    return page.locator('[data-testid="stChatInput"] textarea')


def sidebar(page: Page) -> Locator:
    return page.locator('[data-testid="stSidebar"]')


def assistant_messages(page: Page) -> Locator:
    return page.locator('[data-testid="stChatMessage"]').filter(
        has=page.locator('[data-testid="stChatMessageAvatarAssistant"]')
    )


def user_messages(page: Page) -> Locator:
    return page.locator('[data-testid="stChatMessage"]').filter(
        has=page.locator('[data-testid="stChatMessageAvatarUser"]')
    )


def open_sign_in(session: BrowserSession) -> Page:
    page = session.page
    page.goto(session.ui.url)
    expect(page.get_by_label("Username")).to_be_visible(timeout=60_000)
    return page


def submit_sign_in(page: Page, name: str, password: str) -> None:
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(session: BrowserSession, account: Account) -> Page:
    page = open_sign_in(session)
    submit_sign_in(page, account.name, account.password)
    expect(chat_input(page)).to_be_visible(timeout=60_000)
    expect(sidebar(page).get_by_text(f"Signed in as {account.name}")).to_be_visible()
    return page


def ask(page: Page, question: str) -> list[str]:
    """Ask and wait for the finished answer (its feedback buttons); returns every distinct
    text the new assistant message showed on the way, as it streamed in."""
    answers = assistant_messages(page)
    before = answers.count()
    chat_input(page).fill(question)
    chat_input(page).press("Enter")
    seen: list[str] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if answers.count() > before:
            last = answers.last
            try:
                text = last.inner_text(timeout=1_000)
                finished = last.get_by_role("radio", name="Thumbs up").count() > 0
            except PlaywrightError:  # re-rendered while we read it
                continue
            if not seen or seen[-1] != text:
                seen.append(text)
            if finished and CURSOR not in text:
                return seen
        time.sleep(0.05)
    pytest.fail(f"no finished answer within {ANSWER_TIMEOUT_SECONDS:.0f} s; saw {seen[-3:]}")


def source(page: Page, name: str) -> Locator:
    return assistant_messages(page).last.locator('[data-testid="stExpander"]').filter(has_text=name)


def all_text(page: Page) -> str:
    """Everything the page holds as text, shown or folded away (closed expanders too)."""
    return page.locator("body").text_content() or ""


def open_library(page: Page) -> list[str]:
    """Open the Library page; the names in its documents table."""
    sidebar(page).get_by_role("link", name="Library").click()
    expect(page.get_by_role("heading", name="Documents")).to_be_visible()
    table = page.locator('[data-testid="stDataFrame"]').first
    names = table.locator('[role="gridcell"][aria-colindex="1"]')  # Name, the first column
    expect(names.first).to_be_attached(timeout=30_000)
    return [name.strip() for name in names.all_text_contents()]


def sign_out(page: Page) -> None:
    sidebar(page).get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(chat_input(page)).to_have_count(0)


def test_a_user_asks_sees_the_source_gives_feedback_and_finds_the_conversation_again(
    browser: BrowserSession,
) -> None:
    page, shots, erika = browser.page, browser.shots, browser.ui.reader

    open_sign_in(browser)
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    expect(chat_input(page)).to_have_count(0)
    expect(page.get_by_role("link", name="Library")).to_have_count(0)
    shots.take(page, "sign-in-form")

    submit_sign_in(page, erika.name, erika.password)
    expect(chat_input(page)).to_be_visible(timeout=60_000)
    expect(chat_input(page)).to_have_attribute("placeholder", "Ask a question about your documents")
    shots.take(page, "signed-in")

    streamed = ask(page, HARBOUR_QUESTION)
    partial = [text for text in streamed if CURSOR in text]
    assert len({len(text) for text in partial}) >= 2, f"the answer did not stream in: {streamed}"
    answer = assistant_messages(page).last
    expect(answer).to_contain_text("4,750,000")
    expect(user_messages(page).last).to_contain_text(HARBOUR_QUESTION)
    expect(answer.get_by_text("Sources", exact=True)).to_be_visible()
    shots.take(page, "answer-with-sources")

    memo = source(page, MEMO)
    expect(memo).to_have_count(1)
    memo.locator("summary").click()
    expect(memo).to_contain_text("Harbour Renovation")
    expect(memo).to_contain_text("4,750,000")
    picture = memo.locator("img")
    expect(picture).to_be_visible(timeout=30_000)
    assert picture.evaluate("img => img.complete && img.naturalWidth > 0"), "page image not drawn"
    memo.scroll_into_view_if_needed()
    shots.take(page, "source-opened")

    answer.get_by_role("radio", name="Thumbs down").click()
    comment = answer.get_by_label("Comment (optional)")
    expect(comment).to_be_visible()
    comment.fill("The project lead is missing.")
    shots.take(page, "feedback-comment")
    answer.get_by_role("button", name="Send").click()
    expect(page.get_by_text("Thank you for your feedback.")).to_be_visible()
    shots.take(page, "feedback-thanks")

    assert MEMO in open_library(page)
    shots.take(page, "library")

    sign_out(page)
    shots.take(page, "signed-out")

    submit_sign_in(page, erika.name, erika.password)
    expect(chat_input(page)).to_be_visible(timeout=60_000)
    expect(assistant_messages(page)).to_have_count(0)
    conversation = sidebar(page).get_by_role(
        "button", name=re.compile(r"approved budget of the Harbour")
    )
    expect(conversation).to_have_count(1)
    shots.take(page, "signed-in-again")
    conversation.click()
    expect(user_messages(page)).to_have_count(1)
    expect(user_messages(page).first).to_contain_text(HARBOUR_QUESTION)
    expect(assistant_messages(page).first).to_contain_text("4,750,000")
    expect(source(page, MEMO)).to_have_count(1)
    shots.take(page, "conversation-reopened")

    browser.traffic.assert_only_local()


def test_a_restricted_document_reaches_only_the_user_who_may_read_it(
    browser: BrowserSession,
) -> None:
    page, shots, ui = browser.page, browser.shots, browser.ui

    sign_in(browser, ui.outsider)
    ask(page, RESTRICTED_QUESTION)
    expect(assistant_messages(page).last).not_to_contain_text(MINUTES_FACT)
    shots.take(page, "outsider-answer")
    for secret in (MINUTES, "board-minutes", MINUTES_FACT):
        assert secret not in all_text(page), f"the outsider's chat shows {secret!r}"
    library = open_library(page)
    assert MEMO in library  # the table is read: what is missing is missing
    assert MINUTES not in library
    assert MINUTES not in all_text(page)
    shots.take(page, "outsider-library")
    sign_out(page)

    sign_in(browser, ui.reader)
    ask(page, RESTRICTED_QUESTION)
    answer = assistant_messages(page).last
    expect(answer).to_contain_text(MINUTES_FACT)
    expect(source(page, MINUTES)).to_have_count(1)
    shots.take(page, "reader-answer")
    assert MINUTES in open_library(page)
    shots.take(page, "reader-library")

    browser.traffic.assert_only_local()


def test_a_wrong_password_shows_the_error_and_no_chat(browser: BrowserSession) -> None:
    page, shots, erika = browser.page, browser.shots, browser.ui.reader

    open_sign_in(browser)
    submit_sign_in(page, erika.name, "not-erikas-password")
    expect(page.get_by_text("Unknown username or wrong password.")).to_be_visible()
    expect(chat_input(page)).to_have_count(0)
    expect(sidebar(page).get_by_role("button", name="Sign out")).to_have_count(0)
    expect(page.get_by_role("link", name="Library")).to_have_count(0)
    shots.take(page, "wrong-password")

    browser.traffic.assert_only_local()


def test_a_document_that_attacks_changes_nothing_and_makes_the_page_fetch_nothing(
    browser: BrowserSession,
) -> None:
    page, shots = browser.page, browser.shots
    sign_in(browser, browser.ui.reader)
    ask(page, "What is the password of the guest Wi-Fi?")
    # The answer itself (the message's first paragraph; its sources follow, text as it is).
    answer = assistant_messages(page).last.locator('[data-testid="stMarkdownContainer"]').first
    expect(answer).to_contain_text("harbour-2026")
    expect(answer).not_to_contain_text("HACKED")
    planted = source(page, PLANTED_FILE.rsplit("/", 1)[-1])
    expect(planted).to_have_count(1)
    planted.locator("summary").click()
    expect(planted).to_contain_text("attacker.example")  # shown, as text
    shots.take(page, "planted-source-opened")
    assert page.locator("a[href*='attacker'], img[src*='attacker']").count() == 0
    assert planted.locator("a, img").count() == 0, "document text became a link or an image"
    browser.traffic.assert_only_local()


def test_markdown_in_a_file_name_is_shown_as_text_and_fetches_nothing(
    browser: BrowserSession,
) -> None:
    page, shots = browser.page, browser.shots
    sign_in(browser, browser.ui.reader)
    ask(page, "What was the Q3 revenue of the harbour gift shop?")
    listed = source(page, "Q3 report")
    expect(listed).to_have_count(1)
    folder, name = MARKDOWN_NAMED_FILE.rsplit("/", 1)
    label = listed.locator("summary").inner_text().replace("\u2060", "")  # the word joiners
    assert name in label and folder in label, label
    assert listed.locator("summary img, summary a").count() == 0
    shots.take(page, "markdown-named-source")
    # The folder is a choice of the chat's folder filter too.
    filters = sidebar(page).locator('[data-testid="stExpander"]').filter(has_text="Filters")
    filters.locator("summary").click()
    choice = page.get_by_role("option").filter(has_text=folder.split("/")[-1])
    for _ in range(3):  # a rerun of the page (the sidebar drawn again) closes an open list
        filters.locator('[data-testid="stSelectbox"]').first.click()
        try:
            expect(choice).to_have_count(1, timeout=5_000)
            break
        except AssertionError:
            page.keyboard.press("Escape")
    expect(choice).to_have_count(1)
    shots.take(page, "markdown-named-folder-choice")
    page.keyboard.press("Escape")
    assert page.locator("img[src*='attacker'], a[href*='attacker']").count() == 0
    browser.traffic.assert_only_local()

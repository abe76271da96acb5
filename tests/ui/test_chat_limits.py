"""The chat page refuses an over-long question with a message, before searching."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from appliance.conversations import ConversationStore
from settings import Settings
from tests.ui.test_app import APP, app_env, ask, signed_in  # noqa: F401 (app_env: a fixture)


@pytest.mark.usefixtures("app_env")
def test_an_oversized_question_is_refused_on_the_chat_page_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAG_RETRIEVAL__MAX_QUESTION_CHARS", "100")
    question = "What is the approved budget of the Harbour Renovation Project? " * 3
    at = ask(signed_in(AppTest.from_file(APP)), question)
    assert [e.value for e in at.error] == [
        "the question has 188 characters, more than the 100 allowed; shorten it and ask again"
    ]
    assert not at.exception
    settings = Settings()
    assert ConversationStore(settings.history_path).list("erika") == []

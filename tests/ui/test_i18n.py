"""The UI's texts: every message in English, French and German, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from ui.i18n import LANGUAGES, TEXTS, pick_language, translate

REQUIRED = [
    "title", "username", "password", "sign_in", "sign_out", "wrong_password", "locked",
    "session_expired", "signed_in_as", "ask_placeholder", "refusal", "sources", "closest",
    "page", "attachment", "llm_unavailable", "new_conversation", "conversations", "rename",
    "delete", "feedback_comment", "feedback_thanks", "send", "filters", "folder", "file_type",
    "modified_after", "modified_before", "chat", "library", "admin", "search_by_name",
    "documents", "status", "last_indexed", "pages", "failed_files", "reason",
    "start_ingestion", "share", "last_runs", "users", "add_user", "groups", "is_admin",
    "export_feedback", "language", "no_documents", "ingestion_running", "ingestion_done",
    "passage", "page_image",
]  # fmt: skip


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_every_required_message_is_there() -> None:
    assert set(REQUIRED) <= set(TEXTS)


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_each_message_has_all_three_languages_and_the_same_placeholders(key: str) -> None:
    texts = TEXTS[key]
    assert set(texts) == set(LANGUAGES)
    assert all(text.strip() == text and text for text in texts.values())
    assert placeholders(texts["fr"]) == placeholders(texts["en"]) == placeholders(texts["de"])


def test_translations_are_translated() -> None:
    for language in ("fr", "de"):
        same = [key for key, texts in TEXTS.items() if texts[language] == texts["en"]]
        # words such as "Sources", "Documents", "Chat", "Status" are the same in some languages
        assert len(same) <= 6, (language, same)


def test_translate_fills_placeholders() -> None:
    assert translate("locked", "en", minutes=15) == (
        "Too many failed sign-ins. Try again in 15 minutes."
    )
    assert translate("ingestion_running", "de", done=3, total=10) == (
        "Indexierung läuft: 3 von 10 Dateien"
    )
    assert translate("signed_in_as", "fr", user="alice") == "Connecté en tant que alice"
    assert translate("sign_in", "fr") == "Se connecter"


def test_an_unknown_language_falls_back_to_english() -> None:
    assert translate("sign_out", "es") == "Sign out"


def test_an_unknown_key_or_a_missing_value_says_what_to_do() -> None:
    with pytest.raises(KeyError, match="add it to ui.i18n.TEXTS"):
        translate("no_such_text", "en")
    with pytest.raises(KeyError, match="minutes"):
        translate("locked", "en")


@pytest.mark.parametrize(
    ("setting", "browser", "expected"),
    [
        ("auto", "fr-FR", "fr"),
        ("auto", "de_CH", "de"),
        ("auto", "DE", "de"),
        ("auto", "en-GB", "en"),
        ("auto", "es-ES", "en"),
        ("auto", None, "en"),
        ("auto", "", "en"),
        ("auto", "it-IT,de;q=0.8,en;q=0.5", "de"),
        ("de", "fr-FR", "de"),
        ("fr", None, "fr"),
        ("en", "de-DE", "en"),
    ],
)
def test_pick_language(setting: str, browser: str | None, expected: str) -> None:
    assert pick_language(setting, browser) == expected

"""Who is signed in, in which language, and the sign-in form."""

from __future__ import annotations

import time

import streamlit as st

from retrieval.access import Scope
from retrieval.identity import session_expired
from retrieval.users import User
from ui import resources
from ui.i18n import pick_language, translate


def language() -> str:
    if "language" not in st.session_state:
        st.session_state.language = pick_language(
            resources.settings().ui.language, st.context.locale
        )
    return str(st.session_state.language)


def t(key: str, **values: object) -> str:
    """The UI text `key` in the session's language."""
    return translate(key, language(), **values)


def current_user() -> User | None:
    """The signed-in user, or None: never signed in, signed out, or the session has expired
    (then the sign-in form says so)."""
    user: User | None = st.session_state.get("user")
    if user is None:
        return None
    minutes = resources.settings().ui.session_minutes
    if session_expired(st.session_state.signed_in_at, time.time(), minutes):
        resources.sign_in_guard().sign_out(user.name, "expired")
        end_session()
        st.session_state.notice = "session_expired"
        return None
    return user


def reading_scope(user: User) -> Scope:
    return user.reading_scope(resources.settings().access.admins_read_everything)


def end_session() -> None:
    kept = {"language": st.session_state.get("language")}
    st.session_state.clear()
    st.session_state.update({k: v for k, v in kept.items() if v is not None})


def sign_out(user: User) -> None:
    resources.sign_in_guard().sign_out(user.name)
    end_session()


def sign_in_page() -> None:
    st.title(t("title"))
    notice = st.session_state.pop("notice", None)
    if notice:
        st.info(t(notice))
    with st.form("sign-in"):
        name = st.text_input(t("username"))
        password = st.text_input(t("password"), type="password")
        submitted = st.form_submit_button(t("sign_in"))
    if not submitted:
        return
    result = resources.sign_in_guard().sign_in(resources.identity(), name, password)
    if result.user is None:
        st.error(t(result.message_id or "wrong_password", minutes=result.retry_after_minutes))
        return
    end_session()
    st.session_state.user = result.user
    st.session_state.signed_in_at = time.time()
    st.rerun()

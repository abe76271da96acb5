"""Who is signed in, in which language, and the sign-in form.

A session holds the user read at sign-in, and reads them again from the directory on every
request (or, for a directory whose `refresh_seconds` say so, once that time has passed): a
user who is gone, or whose role or groups changed, is signed out there and then. While the
organisation's directory cannot be asked, a session due to be read again shows nothing but
that, and goes on once the directory answers.
"""

from __future__ import annotations

import logging
import time

import streamlit as st

from appliance.errors import DirectoryUnavailable
from appliance.identity import SignOutReason, client_address, session_change, session_expired
from appliance.users import User
from retrieval.access import Scope
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
    """The signed-in user, or None: never signed in, signed out, the session has expired, or
    the user was removed or changed in the directory since (the sign-in form says so)."""
    user: User | None = st.session_state.get("user")
    if user is None:
        return None
    now = time.time()
    minutes = resources.settings().ui.session_minutes
    if session_expired(st.session_state.signed_in_at, now, minutes):
        _end(user, "expired", "session_expired")
        return None
    identity = resources.appliance().parts.identity
    if now - st.session_state.get("user_read_at", 0.0) >= identity.refresh_seconds:
        try:
            change = session_change(identity, user)
        except DirectoryUnavailable:
            # Fail closed, but keep the session: it goes on once the directory answers.
            st.error(t("directory_unavailable"))
            st.stop()
        if change is not None:
            _end(user, change, "account_changed")
            return None
        st.session_state.user_read_at = now
    return user


def _end(user: User, reason: SignOutReason, notice: str) -> None:
    resources.appliance().parts.sign_in_guard.sign_out(user.name, reason)
    end_session()
    st.session_state.notice = notice


def reading_scope(user: User) -> Scope:
    return user.reading_scope(resources.settings().access.admins_read_everything)


def end_session() -> None:
    kept = {"language": st.session_state.get("language")}
    st.session_state.clear()
    st.session_state.update({k: v for k, v in kept.items() if v is not None})


def sign_out(user: User) -> None:
    resources.appliance().parts.sign_in_guard.sign_out(user.name)
    end_session()


def sign_in_page() -> None:
    st.title(t("title"))
    notice = st.session_state.pop("notice", None)
    if notice:
        st.info(t(notice))
    if resources.settings().identity.provider == "oidc":
        from ui.single_sign_on import finish_from_redirect, sign_in_button

        finish_from_redirect()
        sign_in_button()
    with st.form("sign-in"):
        name = st.text_input(t("username"))
        password = st.text_input(t("password"), type="password")
        submitted = st.form_submit_button(t("sign_in"))
    if not submitted:
        return
    result = resources.appliance().sign_in(name, password, _client_address())
    if result.user is None:
        st.error(t(result.message_id or "wrong_password", minutes=result.retry_after_minutes))
        return
    end_session()
    st.session_state.user = result.user
    st.session_state.signed_in_at = st.session_state.user_read_at = time.time()
    st.rerun()


def begin_session(user: User) -> None:
    """A new session signed in as `user` (through single sign-on), shown at once."""
    end_session()
    st.session_state.user = user
    st.session_state.signed_in_at = st.session_state.user_read_at = time.time()
    st.rerun()


_warned_of_untrusted_proxy = False


def _client_address() -> str | None:
    """The client's address, through the reverse proxies the settings trust."""
    global _warned_of_untrusted_proxy
    # Streamlit gives no address (None) for a connection from this host's loopback.
    peer = st.context.ip_address or "127.0.0.1"
    forwarded = st.context.headers.get_all("X-Forwarded-For")
    trusted = resources.settings().ui.trusted_proxies
    address = client_address(peer, forwarded, trusted)
    if forwarded and address == peer and not _warned_of_untrusted_proxy:
        _warned_of_untrusted_proxy = True
        logging.getLogger(__name__).warning(
            "sign-ins come with an X-Forwarded-For header from %s, which RAG_UI__TRUSTED_PROXIES "
            "does not name: if it is the reverse proxy, all users share its address for sign-in "
            "throttling until it is named there",
            peer,
        )
    return address

"""Signing in through the organisation's OpenID provider (`identity.provider` oidc): the
button that takes the browser there, and the page load that brings it back.

The provider sends the browser back to `identity.oidc.redirect_url` with `code` and `state`
in the query, in a new session: the appliance finishes the sign-in it started if the browser
holds that sign-in's key (`BROWSER_KEY_COOKIE`, set with the button), the query is cleared,
and the app shows."""

from __future__ import annotations

import html
import json
import time

import streamlit as st

from appliance.errors import ProviderError, Unauthorized
from appliance.sso import PENDING_SECONDS
from ui import resources
from ui.session import _client_address, begin_session, t

# The browser that starts a sign-in keeps its key here; Lax, so it comes back with the
# provider's redirect (a top-level navigation), and for the 10 minutes a sign-in may take.
BROWSER_KEY_COOKIE = "rag-sso-key"

_BUTTON_STYLE = (
    "display:inline-block;padding:0.5rem 1rem;border-radius:0.5rem;"
    "background:#ff4b4b;color:#fff;text-decoration:none;font-weight:600"
)


def finish_from_redirect() -> None:
    """On the page the provider sent the browser back to: sign the user in (and rerun), or
    say it failed. Does nothing on any other page load."""
    query = st.query_params
    if "state" not in query or not ("code" in query or "error" in query):
        return
    code, state = query.get("code", ""), query.get("state", "")
    st.query_params.clear()
    if not code:
        st.error(t("sso_failed"))
        return
    try:
        browser_key = st.context.cookies.get(BROWSER_KEY_COOKIE, "")
        user = resources.appliance().finish_single_sign_on(
            code, state, _client_address(), browser_key
        )
    except (Unauthorized, ProviderError):
        st.error(t("sso_failed"))
        return
    begin_session(user)


def sign_in_button() -> None:
    """A link styled as a button to the provider's sign-in, in this tab. The sign-in it
    starts is reused for this session's reruns while it is still good."""
    started_at = st.session_state.get("sso_started_at", 0.0)
    if time.time() - started_at > PENDING_SECONDS / 2 or "sso_url" not in st.session_state:
        try:
            url, key = resources.appliance().start_single_sign_on()
        except ProviderError:
            st.warning(t("sso_unavailable"))
            return
        st.session_state.sso_url, st.session_state.sso_key = url, key
        st.session_state.sso_started_at = time.time()
    secure = (
        "; Secure" if resources.settings().identity.oidc.redirect_url.startswith("https:") else ""
    )
    cookie = f"{BROWSER_KEY_COOKIE}={st.session_state.sso_key}; path=/; max-age={PENDING_SECONDS}"
    st.html(
        f"<script>document.cookie = {json.dumps(cookie + '; SameSite=Lax' + secure)};</script>",
        unsafe_allow_javascript=True,
    )
    url = html.escape(st.session_state.sso_url, quote=True)
    label = html.escape(t("sso_sign_in"))
    st.markdown(
        f'<a href="{url}" target="_self" style="{_BUTTON_STYLE}">{label}</a>',
        unsafe_allow_html=True,
    )
    st.caption(t("break_glass_only"))

"""The appliance's web UI: sign in, then chat, the library, and for admins the admin page.

A page that fails shows one translated line with an incident id; the details go to the log
(`ui.incident`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from settings import enforce_offline, protect_state  # noqa: E402

enforce_offline()
protect_state()

import streamlit as st  # noqa: E402

from appliance.users import User  # noqa: E402
from ui.admin import admin_page  # noqa: E402
from ui.chat import chat_page  # noqa: E402
from ui.incident import log_as_json_lines, shown_as_incident  # noqa: E402
from ui.library import library_page  # noqa: E402
from ui.safe import literal_markdown  # noqa: E402
from ui.session import current_user, sign_in_page, sign_out, t  # noqa: E402


def navigation(user: User) -> None:
    pages = [
        st.Page(chat_page, title=t("chat"), icon=":material/chat:", url_path="chat", default=True),
        st.Page(library_page, title=t("library"), icon=":material/folder:", url_path="library"),
    ]
    if user.admin:
        pages.append(
            st.Page(admin_page, title=t("admin"), icon=":material/settings:", url_path="admin")
        )
    page = st.navigation(pages)
    with st.sidebar:
        st.caption(literal_markdown(t("signed_in_as", user=user.name)))
        if st.button(t("sign_out"), icon=":material/logout:"):
            sign_out(user)
            st.rerun()
    page.run()


@shown_as_incident
def main() -> None:
    st.set_page_config(page_title=t("title"), page_icon="📄", layout="centered")
    user = current_user()
    if user is None:
        st.navigation([st.Page(sign_in_page, title=t("sign_in"), url_path="sign-in")]).run()
    else:
        navigation(user)


log_as_json_lines()
main()

"""The library: the documents the signed-in user may read, and for admins the files that
failed with their reasons."""

from __future__ import annotations

import streamlit as st

from appliance.users import User
from ui import resources
from ui.session import reading_scope, t


def library_page() -> None:
    user: User = st.session_state.user
    st.header(t("library"))
    name = st.text_input(t("search_by_name"), key="library-search")
    documents = resources.appliance().parts.catalog.documents(reading_scope(user), name.strip())
    st.subheader(t("documents"))
    if not documents:
        st.info(t("no_documents"))
    else:
        st.dataframe(
            [
                {
                    "Name": doc.name,
                    t("file_type"): doc.file_type,
                    t("pages"): doc.pages,
                    t("status"): doc.status,
                    t("last_indexed"): doc.indexed_at.strftime("%Y-%m-%d %H:%M UTC"),
                    t("folder"): doc.folder,
                }
                for doc in documents
            ],
            hide_index=True,
            width="stretch",
        )
    if user.admin:
        failed = resources.appliance().parts.catalog.failed()
        st.subheader(t("failed_files"))
        st.dataframe(
            [{t("folder"): f.folder, "Name": f.name, t("reason"): f.error} for f in failed],
            hide_index=True,
            width="stretch",
        )

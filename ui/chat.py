"""The chat page: the user's conversations in the sidebar, filters, and questions answered
from the documents the user may read, streamed as the model writes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time

import streamlit as st

from appliance.core import Asked
from appliance.users import User
from llm.errors import LLMError
from retrieval.access import Scope
from retrieval.errors import QueryTooLong
from retrieval.store import SearchFilters
from ui import resources
from ui.safe import literal_label, literal_markdown
from ui.session import reading_scope, t
from ui.turns import show_turn


def chat_page() -> None:
    user: User = st.session_state.user
    with st.sidebar:
        conversation_list(user)
        filters = filter_panel(user)
    conversation_id = st.session_state.get("conversation_id")
    # Shown as the user may read the sources now, not as when they were asked.
    turns = (
        resources.appliance().turns(resources.actor(user), conversation_id)
        if conversation_id
        else []
    )
    for turn in turns:
        show_turn(user, turn)
    question = st.chat_input(t("ask_placeholder"))
    if question and question.strip():
        ask(user, question.strip(), filters)


def conversation_list(user: User) -> None:
    appliance, actor = resources.appliance(), resources.actor(user)
    current = st.session_state.get("conversation_id")
    if st.button(t("new_conversation"), icon=":material/add:", width="stretch"):
        st.session_state.pop("conversation_id", None)
        st.rerun()
    st.caption(t("conversations"))
    for conversation in appliance.conversation_list(actor):
        selected = conversation.id == current
        if st.button(
            literal_label(conversation.title), key=f"open-{conversation.id}", width="stretch",
            type="primary" if selected else "secondary",
        ):  # fmt: skip
            st.session_state.conversation_id = conversation.id
            st.rerun()
        if selected:
            with st.expander(t("rename")):
                title = st.text_input(t("rename"), conversation.title, key="rename-title")
                if st.button(t("rename"), key="rename-save") and title.strip():
                    appliance.rename_conversation(actor, conversation.id, title.strip())
                    st.rerun()
                if st.button(t("delete"), key="delete-conversation", icon=":material/delete:"):
                    appliance.delete_conversation(actor, conversation.id)
                    st.session_state.pop("conversation_id", None)
                    st.rerun()


def filter_panel(user: User) -> SearchFilters:
    """Folder, file type and date filters, offering only what the user may read."""
    folders, types = _filter_choices(reading_scope(user))
    with st.expander(t("filters")):
        folder = st.selectbox(t("folder"), ["", *folders], key="filter-folder")
        file_type = st.selectbox(t("file_type"), ["", *types], key="filter-type")
        after = st.date_input(t("modified_after"), value=None, key="filter-after")
        before = st.date_input(t("modified_before"), value=None, key="filter-before")
    return SearchFilters(
        folder=folder or None,
        file_type=file_type or None,
        modified_after=_epoch(after, time.min),
        modified_before=_epoch(before, time.max),
    )


@st.cache_data(ttl=60, show_spinner=False)
def _filter_choices(scope: Scope) -> tuple[list[str], list[str]]:
    """The folders and file types the scope may read. Every click reruns the page: the
    library is read at most once a minute per scope, not on each rerun."""
    documents = resources.appliance().parts.catalog.documents(scope)
    folders = sorted({doc.folder for doc in documents})
    return folders, sorted({doc.file_type for doc in documents if doc.file_type})


def _epoch(day: object, at: time) -> float | None:
    if not isinstance(day, date):
        return None
    return datetime.combine(day, at, tzinfo=UTC).timestamp()


def _provisional(text: str) -> str:
    """The answer so far, greyed, a line at a time (a colour directive ends at a line end)."""
    lines = literal_markdown(text).split("  \n")
    return "  \n".join(f":gray[{line}]" if line.strip() else line for line in lines) + " ▌"


def ask(user: User, question: str, filters: SearchFilters) -> None:
    with st.chat_message("user"):
        st.markdown(literal_markdown(question))
    with st.chat_message("assistant"):
        answering = resources.appliance().ask_streaming(
            resources.actor(user), question, filters,
            conversation_id=st.session_state.get("conversation_id"), remember=True,
        )  # fmt: skip
        placeholder = None
        try:
            with st.spinner():
                first = next(answering)
            for event in itertools.chain([first], answering):
                if isinstance(event, Asked):
                    st.session_state.conversation_id = event.conversation_id
                    break
                if placeholder is None:
                    # Shown as provisional: the answer is kept only if its sources bear it out.
                    st.caption(t("checking"))
                    placeholder = st.empty()
                placeholder.markdown(_provisional(event.text))
        except QueryTooLong as exc:
            st.error(str(exc))
            return
        except LLMError as exc:
            st.error(literal_markdown(t("llm_unavailable", error=exc)))
            return
    st.rerun()

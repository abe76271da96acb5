"""The chat page: the user's conversations in the sidebar, filters, and questions answered
from the documents the user may read, streamed as the model writes."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time

import streamlit as st

from llm.errors import LLMError
from llm.history import Turn, default_title, readable_turns
from retrieval.access import Scope
from retrieval.audit import clip_query
from retrieval.errors import QueryTooLong
from retrieval.store import SearchFilters
from retrieval.users import User
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
    stored = resources.conversations().turns(user.name, conversation_id) if conversation_id else []
    # Shown as the user may read the sources now, not as when they were asked.
    turns = readable_turns(stored, resources.store(), reading_scope(user))
    for turn in turns:
        show_turn(user, turn)
    question = st.chat_input(t("ask_placeholder"))
    if question and question.strip():
        ask(user, question.strip(), turns, filters)


def conversation_list(user: User) -> None:
    store = resources.conversations()
    current = st.session_state.get("conversation_id")
    if st.button(t("new_conversation"), icon=":material/add:", width="stretch"):
        st.session_state.pop("conversation_id", None)
        st.rerun()
    st.caption(t("conversations"))
    for conversation in store.list(user.name):
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
                    store.rename(user.name, conversation.id, title.strip())
                    st.rerun()
                if st.button(t("delete"), key="delete-conversation", icon=":material/delete:"):
                    store.delete(user.name, conversation.id)
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
    documents = resources.catalog().documents(scope)
    folders = sorted({doc.folder for doc in documents})
    return folders, sorted({doc.file_type for doc in documents if doc.file_type})


def _epoch(day: object, at: time) -> float | None:
    if not isinstance(day, date):
        return None
    return datetime.combine(day, at, tzinfo=UTC).timestamp()


def _elapsed_ms(started: float) -> int:
    return round((clock.monotonic() - started) * 1000)


def _provisional(text: str) -> str:
    """The answer so far, greyed, a line at a time (a colour directive ends at a line end)."""
    lines = literal_markdown(text).split("  \n")
    return "  \n".join(f":gray[{line}]" if line.strip() else line for line in lines) + " ▌"


def ask(user: User, question: str, turns: list[Turn], filters: SearchFilters) -> None:
    with st.chat_message("user"):
        st.markdown(literal_markdown(question))
    with st.chat_message("assistant"):
        engine = resources.answerer()
        history = [(turn.question, turn.text) for turn in turns]
        started = clock.monotonic()
        timing: dict[str, int] = {}
        with st.spinner():
            try:
                prepared = engine.prepare(question, reading_scope(user), filters, history)
            except QueryTooLong as exc:
                st.error(str(exc))
                return
        text = ""
        if prepared.messages is not None:
            # Shown as provisional: the answer is kept only if its sources bear it out.
            st.caption(t("checking"))
            placeholder = st.empty()
            try:
                for token in engine.chat.stream(prepared.messages):
                    timing.setdefault("first_token_ms", _elapsed_ms(started))
                    text += token
                    placeholder.markdown(_provisional(text))
            except LLMError as exc:
                st.error(literal_markdown(t("llm_unavailable", error=exc)))
                return
        answer = engine.finish(prepared, text)
        timing["ms"] = _elapsed_ms(started)
    store = resources.conversations()
    conversation_id = st.session_state.get("conversation_id")
    if conversation_id is None:
        conversation_id = store.create(user.name, default_title(question)).id
        st.session_state.conversation_id = conversation_id
    store.add_turn(user.name, conversation_id, question, answer)
    shown = [hit.chunk.id for hit in answer.passages]
    resources.audit().record(
        user.name,
        "ask",
        {"query": clip_query(question), "chunk_ids": shown, "refused": answer.refused, **timing},
    )
    st.rerun()

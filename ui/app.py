"""The chat page: sign in, ask, read the streamed answer and the passages it came from."""

from __future__ import annotations

import sys
from pathlib import Path, PurePath

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from settings import Settings, enforce_offline  # noqa: E402

enforce_offline()

import streamlit as st  # noqa: E402

from llm.answer import Answer, Answerer  # noqa: E402
from llm.build import build_answerer  # noqa: E402
from llm.errors import LLMError  # noqa: E402
from llm.prompts import REFUSAL  # noqa: E402
from retrieval.build import build_retriever  # noqa: E402
from retrieval.models import Hit  # noqa: E402
from retrieval.users import User, UserDirectory  # noqa: E402
from ui.safe import literal_markdown  # noqa: E402

TITLE = "Document assistant"


@st.cache_resource(show_spinner="Loading the search index…")
def answerer() -> Answerer:
    settings = Settings()
    return build_answerer(settings, build_retriever(settings))


@st.cache_resource
def user_directory() -> UserDirectory:
    return UserDirectory(Settings().users_path)


def sign_in() -> None:
    st.title(TITLE)
    with st.form("sign-in"):
        name = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        user = user_directory().authenticate(name.strip(), password)
        if user is None:
            st.error("Unknown username or wrong password.")
        else:
            st.session_state.user = user
            st.session_state.turns = []
            st.rerun()


def source_label(hit: Hit) -> str:
    path = PurePath(hit.chunk.path)
    attachment = f", attachment {hit.chunk.attachment}" if hit.chunk.attachment else ""
    page = f", page {hit.chunk.page}" if hit.chunk.page else ""
    return f"{path.name}{attachment}{page} — {path.parent}"


def show_sources(hits: list[Hit], heading: str) -> None:
    if not hits:
        return
    st.caption(heading)
    for number, hit in enumerate(hits, start=1):
        with st.expander(f"[{number}] {source_label(hit)}"):
            st.markdown(literal_markdown(hit.chunk.text))


def show_turn(question: str, answer: Answer) -> None:
    with st.chat_message("user"):
        st.markdown(literal_markdown(question))
    with st.chat_message("assistant"):
        st.markdown(literal_markdown(answer.text))
        show_answer_sources(answer)


def show_answer_sources(answer: Answer) -> None:
    if answer.refused:
        show_sources(answer.passages, "Closest passages found")
        return
    cited = {c.chunk_id for c in answer.citations}
    show_sources([h for h in answer.passages if h.chunk.id in cited], "Sources")


def ask(user: User, question: str) -> None:
    with st.chat_message("user"):
        st.markdown(literal_markdown(question))
    with st.chat_message("assistant"):
        engine = answerer()
        earlier = [(asked, said.text) for asked, said in st.session_state.get("turns", [])]
        prepared = engine.prepare(question, user.scope, history=earlier)
        text = ""
        if not prepared.refused_before_model and prepared.messages is not None:
            placeholder = st.empty()
            try:
                for token in engine.chat.stream(prepared.messages):
                    text += token
                    placeholder.markdown(literal_markdown(text) + " ▌")
            except LLMError as exc:
                st.error(f"The language model is unavailable: {exc}")
                return
            placeholder.empty()
        answer = engine.finish(prepared, text)
        st.markdown(literal_markdown(answer.text if not answer.refused else REFUSAL))
        show_answer_sources(answer)
    st.session_state.turns.append((question, answer))


def chat(user: User) -> None:
    st.title(TITLE)
    with st.sidebar:
        st.write(f"Signed in as **{literal_markdown(user.name)}**")
        if st.button("Sign out"):
            st.session_state.clear()
            st.rerun()
    for question, answer in st.session_state.get("turns", []):
        show_turn(question, answer)
    question = st.chat_input("Ask a question about your documents")
    if question:
        ask(user, question)


def main() -> None:
    st.set_page_config(page_title=TITLE, layout="centered")
    user = st.session_state.get("user")
    if user is None:
        sign_in()
    else:
        chat(user)


main()

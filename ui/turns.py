"""A question and its answer as the chat shows them: the answer, its sources (the passage with
the supporting text highlighted and, for PDFs and scans, the page), and the feedback buttons.

Every string that comes from a document (file and folder names included) is escaped where it
is rendered, so Markdown in it shows as typed: a file named `![](http://host/x)` is a name,
never an image the browser would fetch. A source the reader may no longer read
(`appliance.conversations.readable_turns`) is shown as withheld, by its number alone."""

from __future__ import annotations

import re
from pathlib import Path, PurePath

import streamlit as st

from appliance.conversations import WITHHELD_QUOTE, Passage, Turn
from appliance.feedback import Rating
from appliance.users import User
from ui import resources
from ui.highlight import highlighted_markdown
from ui.page_image import page_image
from ui.safe import literal_label, literal_markdown
from ui.session import t

_QUOTE = re.compile(r"\u201c(.+)\u201d")
_RATINGS: tuple[Rating, Rating] = ("down", "up")  # st.feedback("thumbs"): 0 down, 1 up


def source_label(number: int, passage: Passage) -> str:
    """`[2] minutes.pdf, page 3 — /share/finance` as Markdown that shows it as it reads."""
    path = PurePath(passage.path)
    page = f", {t('page', page=passage.page)}" if passage.page else ""
    return literal_label(f"[{number}] {path.name}{page} — {path.parent}")


def show_turn(user: User, turn: Turn) -> None:
    with st.chat_message("user"):
        st.markdown(literal_markdown(turn.question))
    with st.chat_message("assistant"):
        if turn.refused:
            st.markdown(literal_markdown(t("refusal")))
            show_passages(turn.passages, turn.passages, t("closest"), "")
        else:
            text = t("quote_withheld") if turn.text == WITHHELD_QUOTE else turn.text
            st.markdown(literal_markdown(text))
            if turn.origin == "quote":
                st.caption(t("quoted_note"))
            cited = {citation.chunk_id for citation in turn.citations}
            shown = [p for p in turn.passages if p.chunk_id in cited]
            show_passages(turn.passages, shown, t("sources"), turn.text, _quoted(turn))
        feedback_widget(user, turn)


def _quoted(turn: Turn) -> str | None:
    """The passage sentence an answer quotes (when the model's own answer was not kept)."""
    if turn.origin != "quote":
        return None
    match = _QUOTE.search(turn.text)
    return match.group(1) if match else None


def show_passages(
    all_passages: list[Passage],
    shown: list[Passage],
    heading: str,
    answer: str,
    quote: str | None = None,
) -> None:
    """The passages in `shown`, each numbered as the answer cites it (its place among all the
    passages the model was given)."""
    if not shown:
        return
    st.caption(heading)
    for passage in shown:
        number = all_passages.index(passage) + 1
        if passage.withheld:
            st.caption(literal_label(f"[{number}] {t('source_withheld')}"))
            continue
        with st.expander(source_label(number, passage)):
            st.markdown(highlighted_markdown(passage.text, answer, quote))
            image = page_image(
                Path(passage.path), passage.page, passage.doc_id,
                resources.settings().page_images_dir,
            )  # fmt: skip
            if image is not None:
                st.image(str(image), caption=t("page_image"))


def feedback_widget(user: User, turn: Turn) -> None:
    key = f"feedback-{turn.id}"
    if st.session_state.get(f"{key}-sent"):
        st.caption(t("feedback_thanks"))
        return
    choice = st.feedback("thumbs", key=key)
    if choice is None:
        return
    with st.form(f"{key}-form", clear_on_submit=True, border=False):
        comment = st.text_input(t("feedback_comment"), key=f"{key}-comment")
        if st.form_submit_button(t("send")):
            rating = _RATINGS[choice]
            resources.appliance().rate(resources.actor(user), turn, rating, comment.strip())
            st.session_state[f"{key}-sent"] = True
            st.rerun()

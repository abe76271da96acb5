"""The use cases every entry point calls: one way to ask, keep, rate, audit and manage users
and tokens, whoever calls (the sample share, the real embedder and, for answers the model
writes, the real LLM server)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.actor import Actor
from appliance.core import Appliance, Asked, Provisional
from appliance.errors import NotAllowed, Unauthorized, UnknownConversation, UnknownUser
from appliance.root import Parts
from settings import Settings
from tests.conftest import make_settings

HARBOUR = "What is the approved budget of the Harbour Renovation Project?"


@pytest.fixture
def appliance(ingested: Settings, llm_settings: Settings, tmp_path: Path) -> Iterator[Appliance]:
    """The session's ingested sample share, in a data dir of this test's own."""
    data = tmp_path / "data"
    shutil.copytree(ingested.data_dir, data)
    settings = make_settings(data, llm={"port": llm_settings.llm.port})
    built = Appliance(Parts(settings))
    yield built
    built.close()


def test_a_streamed_answer_is_kept_in_a_new_conversation_and_audited_once(
    appliance: Appliance,
) -> None:
    actor = appliance.actor(None)
    events = list(appliance.ask_streaming(actor, HARBOUR, remember=True))
    *provisional, asked = events
    assert provisional and all(isinstance(event, Provisional) for event in provisional)
    assert isinstance(asked, Asked) and asked.turn is not None
    assert "4,750,000" in asked.answer.text and not asked.answer.refused
    assert [t.question for t in appliance.turns(actor, str(asked.conversation_id))] == [HARBOUR]
    (event,) = [e for e in appliance.parts.audit.events(10) if e.action == "ask"]
    assert event.user == "operator" and event.detail["via"] == "cli"
    assert event.detail["chunk_ids"] == [c.chunk_id for c in asked.answer.citations]
    assert event.detail["passages"] == [hit.chunk.id for hit in asked.answer.passages]
    assert isinstance(event.detail["first_token_ms"], int)


def test_a_follow_up_reads_its_history_from_the_conversation(appliance: Appliance) -> None:
    actor = appliance.actor(None)
    first = appliance.ask(actor, HARBOUR, remember=True)
    follow_up = appliance.ask(
        actor, "Who approved it?", conversation_id=first.conversation_id, remember=True
    )
    assert follow_up.conversation_id == first.conversation_id
    turns = appliance.turns(actor, str(first.conversation_id))
    assert [t.question for t in turns] == [HARBOUR, "Who approved it?"]


def test_an_answer_without_remember_keeps_no_conversation(appliance: Appliance) -> None:
    actor = appliance.actor(None)
    asked = appliance.ask(actor, HARBOUR, history=[("Hello", "Hello, how can I help?")])
    assert asked.turn is None and asked.conversation_id is None
    assert appliance.conversation_list(actor) == []


def test_a_rating_is_only_of_ones_own_answer(appliance: Appliance) -> None:
    appliance.add_user(Actor.operator(), "erika", "erika-password", ["finance"])
    appliance.add_user(Actor.operator(), "mallory", "mallory-password", ["finance"])
    erika, mallory = appliance.actor("erika", "ui"), appliance.actor("mallory", "ui")
    asked = appliance.ask(erika, HARBOUR, remember=True)
    assert asked.turn is not None
    appliance.rate(erika, asked.turn, "up", "clear")
    with pytest.raises(UnknownConversation):
        appliance.rate(mallory, asked.turn, "down")
    (rated,) = appliance.parts.feedback.list()
    assert (rated.user, rated.rating) == ("erika", "up")
    event = next(e for e in appliance.parts.audit.events(10) if e.action == "feedback")
    assert (event.user, event.detail["via"]) == ("erika", "ui")


def test_an_admin_may_not_change_their_own_role_and_the_refusal_is_audited(
    appliance: Appliance,
) -> None:
    appliance.add_user(Actor.operator(), "root-admin", "admin-password", [], admin=True)
    admin = appliance.actor("root-admin", "ui")
    with pytest.raises(NotAllowed):
        appliance.add_user(admin, "root-admin", "admin-password", [], admin=False)
    assert appliance.parts.users.get("root-admin").admin is True
    refused = appliance.parts.audit.events(1)[0]
    assert (refused.user, refused.action) == ("root-admin", "user_change_refused")
    assert refused.detail == {
        "user": "root-admin", "groups": [], "admin": False, "reason": "own account", "via": "ui"
    }  # fmt: skip
    # A new password is theirs to set.
    appliance.add_user(admin, "root-admin", "another-password", [], admin=True)
    added = appliance.parts.audit.events(1)[0]
    assert (added.action, added.detail["user"]) == ("user_add", "root-admin")


def test_a_token_acts_for_its_user_until_the_user_is_removed(appliance: Appliance) -> None:
    appliance.add_user(Actor.operator(), "erika", "erika-password", ["finance"])
    token, secret = appliance.create_token(Actor.operator(), "erika", 30, "script")
    actor = appliance.authenticate(secret, "api")
    assert (actor.name, actor.channel, actor.token_id) == ("erika", "api", token.id)
    assert "group:finance" in actor.scope.principals
    appliance.remove_user(Actor.operator(), "erika")
    with pytest.raises(Unauthorized):
        appliance.authenticate(secret, "api")
    assert appliance.tokens("erika") == []
    with pytest.raises(UnknownUser):
        appliance.create_token(Actor.operator(), "erika")


def test_erasure_from_any_entry_point_is_audited_as_the_actor(appliance: Appliance) -> None:
    appliance.add_user(Actor.operator(), "root-admin", "admin-password", [], admin=True)
    admin = appliance.actor("root-admin", "ui")
    operator = Actor.operator()
    hit = appliance.search(operator, HARBOUR, 1)[0]
    erasure = appliance.erase(admin, path=hit.chunk.path)
    assert erasure.as_json()["remaining"] == 0
    event = next(e for e in appliance.parts.audit.events(10) if e.action == "erase")
    assert (event.user, event.detail["via"], event.detail["path"]) == (
        "root-admin", "ui", hit.chunk.path,
    )  # fmt: skip
    assert all(h.chunk.doc_id != hit.chunk.doc_id for h in appliance.search(operator, HARBOUR, 5))

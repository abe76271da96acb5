"""The appliance's use cases, the one place every entry point (UI, CLI, API) calls.

Each use case takes the `Actor` it acts for, does the work through the parts the composition
root (`appliance.root`) built, and writes the conversation history and the audit log here,
the same way whichever entry point asked. Entry points only translate input and output.

Audit details are the same from every entry point: a search records the hits' chunk ids; a
question records the chunk ids its answer cites (`chunk_ids`) and those of every passage it
was prepared from (`passages`), whether it was refused, and its timings; user changes name
the user under `user`. Every event adds `via` (cli, ui, api, mcp) and, for an API call,
`token`: the id of the token it came with. No event holds document text.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.actor import OPERATOR, Actor, Channel
from appliance.audit import clip_query
from appliance.conversations import Conversation, Turn, readable_turns
from appliance.erase import Erasure, erase
from appliance.errors import (
    DirectoryUnavailable,
    NotAllowed,
    ProviderError,
    Unauthorized,
    UnknownConversation,
    UnknownUser,
)
from appliance.feedback import Rating
from appliance.identity import SignInResult
from appliance.root import Parts
from appliance.sso import OidcIdentity
from appliance.tokens import SECRET_PREFIX, ApiToken
from appliance.users import User
from llm.answer import Answer
from retrieval.models import Hit
from retrieval.store import SearchFilters

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport


@dataclass(frozen=True)
class Provisional:
    """The model's answer so far, while it writes: shown greyed, kept only if its sources bear
    it out."""

    text: str


@dataclass(frozen=True)
class Asked:
    """A question's outcome: the answer, and the turn and conversation it was kept in (none
    when the caller keeps its own history, as an API client does)."""

    answer: Answer
    turn: Turn | None = None
    conversation_id: str | None = None


class Appliance:
    def __init__(self, parts: Parts, clock: Callable[[], float] = time.monotonic) -> None:
        self.parts = parts
        self.settings = parts.settings
        self._clock = clock
        # name → (when read, the user then): what API tokens act as, for `refresh_seconds`.
        self._users_read: dict[str, tuple[float, User | None]] = {}

    # -- acting as someone -------------------------------------------------------------------

    def actor(self, name: str | None, channel: Channel = "cli") -> Actor:
        """The user `name` as the identity provider knows them now (UnknownUser when it
        doesn't; DirectoryUnavailable when the organisation's directory cannot be asked);
        None: the operator."""
        if name is None:
            return Actor.operator()
        user = self.known_user(name)
        return Actor.user(user, self.settings.access.admins_read_everything, channel)

    def known_user(self, name: str) -> User:
        """The user `name` as the identity provider knows them now: the local directory, or
        the organisation's. UnknownUser when it has no such user."""
        user = self.parts.identity.lookup(name)
        if user is not None:
            return user
        if self.settings.identity.provider == "local":
            raise UnknownUser(f"unknown user {name!r}; add it with `rag users add {name}`")
        raise UnknownUser(
            f"unknown user {name!r}: the organisation's directory has no enabled account of "
            "that name, and no local admin has it"
        )

    def actor_of(self, user: User, channel: Channel, token_id: str | None = None) -> Actor:
        return Actor.user(user, self.settings.access.admins_read_everything, channel, token_id)

    def authenticate(self, secret: str, channel: Channel) -> Actor:
        """The user an API token stands for, as the identity provider knew them at most its
        `refresh_seconds` ago; with single sign-on, also the user of a JWT access token of the
        OpenID provider (its groups as the token lists them). Raises Unauthorized (saying why,
        for the audit log) for a token that is unknown, expired, revoked or for another
        audience, or whose user is gone; DirectoryUnavailable when the user is due to be read
        again and the organisation's directory cannot be asked, or the OpenID provider's keys
        cannot be had to check a token."""
        if self.settings.identity.provider == "oidc" and not secret.startswith(SECRET_PREFIX):
            try:
                token_user = self._single_sign_on().user_of_access_token(secret)
            except ProviderError as exc:
                raise DirectoryUnavailable(f"the OpenID provider: {exc}") from exc
            return self.actor_of(token_user, channel)
        token = self.parts.tokens.verify(secret)
        user = self._user_of_token(token.user)
        if user is None:
            raise Unauthorized(f"token {token.id} of a removed user")
        return self.actor_of(user, channel, token.id)

    def _user_of_token(self, name: str) -> User | None:
        identity = self.parts.identity
        now = self._clock()
        read = self._users_read.get(name)
        if read is not None and now - read[0] < identity.refresh_seconds:
            return read[1]
        user = identity.lookup(name)
        self._users_read[name] = (now, user)
        return user

    def record_denied(self, reason: str, path: str, address: str | None) -> None:
        """A request refused for want of valid credentials (never the secret it came with)."""
        self.parts.audit.record(
            "unknown", "api_denied", {"reason": reason, "path": path, "address": address}
        )

    # -- search and questions ----------------------------------------------------------------

    def search(
        self, actor: Actor, query: str, k: int | None = None, filters: SearchFilters | None = None
    ) -> list[Hit]:
        started = self._clock()
        hits = self.parts.answerer.retriever.search(
            query, actor.scope, k or self.settings.retrieval.top_k, filters
        )
        self._record(actor, "search", {
            "query": clip_query(query), "chunk_ids": [hit.chunk.id for hit in hits],
            "ms": self._elapsed_ms(started),
        })  # fmt: skip
        return hits

    def ask(
        self,
        actor: Actor,
        question: str,
        filters: SearchFilters | None = None,
        *,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
        remember: bool = False,
    ) -> Asked:
        """The answer, in one piece (see `ask_streaming` for the arguments)."""
        asked: Asked | None = None
        for event in self.ask_streaming(
            actor, question, filters, history=history, conversation_id=conversation_id,
            remember=remember,
        ):  # fmt: skip
            if isinstance(event, Asked):
                asked = event
        assert asked is not None
        return asked

    def ask_streaming(
        self,
        actor: Actor,
        question: str,
        filters: SearchFilters | None = None,
        *,
        history: Sequence[tuple[str, str]] = (),
        conversation_id: str | None = None,
        remember: bool = False,
    ) -> Iterator[Provisional | Asked]:
        """The model's answer as it writes (`Provisional`, the text so far), then the answer
        kept (`Asked`). The earlier turns come from `history` ((question, answer) pairs), or,
        with `conversation_id`, from that conversation of the actor's. With `remember`, the
        turn is kept in that conversation, or in a new one when none is given. A question over
        the length limit raises QueryTooLong before anything is searched."""
        started = self._clock()
        if conversation_id is not None:
            turns = self.turns(actor, conversation_id)
            history = [(turn.question, turn.text) for turn in turns]
        prepared = self.parts.answerer.prepare(question, actor.scope, filters, history)
        timing: dict[str, int] = {}
        text = ""
        if prepared.messages is not None:
            for token in self.parts.answerer.chat.stream(prepared.messages):
                timing.setdefault("first_token_ms", self._elapsed_ms(started))
                text += token
                yield Provisional(text)
        answer = self.parts.answerer.finish(prepared, text)
        timing["ms"] = self._elapsed_ms(started)
        turn = None
        if remember:
            if conversation_id is None:
                conversation_id = self.start_conversation(actor, question).id
            turn = self.parts.conversations.add_turn(actor.name, conversation_id, question, answer)
        self._record(actor, "ask", {
            "query": clip_query(question),
            "chunk_ids": [citation.chunk_id for citation in answer.citations],
            "passages": [hit.chunk.id for hit in answer.passages],
            "refused": answer.refused, **timing,
        })  # fmt: skip
        yield Asked(answer, turn, conversation_id)

    # -- conversations and feedback ----------------------------------------------------------

    def conversation_list(self, actor: Actor) -> list[Conversation]:
        return self.parts.conversations.list(actor.name)

    def start_conversation(self, actor: Actor, question: str = "") -> Conversation:
        from appliance.conversations import default_title

        return self.parts.conversations.create(actor.name, default_title(question))

    def turns(self, actor: Actor, conversation_id: str) -> list[Turn]:
        """The conversation's turns as the actor may read their sources now."""
        stored = self.parts.conversations.turns(actor.name, conversation_id)
        return readable_turns(stored, self.parts.store, actor.scope)

    def rename_conversation(self, actor: Actor, conversation_id: str, title: str) -> None:
        self.parts.conversations.rename(actor.name, conversation_id, title)

    def delete_conversation(self, actor: Actor, conversation_id: str) -> None:
        self.parts.conversations.delete(actor.name, conversation_id)

    def rate(self, actor: Actor, turn: Turn, rating: Rating, comment: str = "") -> int:
        """Keep the actor's rating of one of their answers."""
        if turn.conversation_id not in {c.id for c in self.conversation_list(actor)}:
            raise UnknownConversation(f"no conversation {turn.conversation_id!r} of {actor.name}")
        kept = self.parts.feedback.record(
            actor.name, turn.question, turn, rating, comment, turn.conversation_id
        )
        self._record(actor, "feedback", {"turn": turn.id, "rating": rating})
        return kept

    # -- users and sign-in -------------------------------------------------------------------

    def sign_in(self, name: str, password: str, address: str | None) -> SignInResult:
        return self.parts.sign_in_guard.sign_in(self.parts.identity, name, password, address)

    def start_single_sign_on(self) -> tuple[str, str]:
        """The OpenID provider's URL that a browser signs in at, and the key that browser
        must keep (a cookie); it comes back to `identity.oidc.redirect_url` with a code and
        the state, for `finish_single_sign_on` within 10 minutes. ProviderError when the
        provider can't be used."""
        return self._single_sign_on().start_sign_in()

    def finish_single_sign_on(
        self, code: str, state: str, address: str | None, browser_key: str
    ) -> User:
        """The user the provider signed in, audited as `login` (`via`: oidc). Raises
        Unauthorized for an unknown, used or expired state or a token that does not validate,
        ProviderError when the provider can't be used; both audited as `login_failed` with
        the reason."""
        try:
            user = self._single_sign_on().finish_sign_in(code, state, browser_key)
        except (Unauthorized, ProviderError) as exc:
            self.parts.audit.record(
                "unknown", "login_failed", {"reason": str(exc), "address": address, "via": "oidc"}
            )
            raise
        self.parts.audit.record(user.name, "login", {
            "groups": list(user.groups), "admin": user.admin, "address": address, "via": "oidc",
        })  # fmt: skip
        return user

    def _single_sign_on(self) -> OidcIdentity:
        identity = self.parts.identity
        if not isinstance(identity, OidcIdentity):
            raise NotAllowed("single sign-on is off: set RAG_IDENTITY__PROVIDER=oidc")
        return identity

    def add_user(
        self, actor: Actor, name: str, password: str, groups: Sequence[str], admin: bool = False
    ) -> User:
        """Add or update a user. An admin changing their own role, or (while admins read only
        what their principals allow) their own groups, is refused (NotAllowed, audited as
        `user_change_refused`): that takes another admin. A new password is theirs to set."""
        wanted = sorted({group.strip() for group in groups if group.strip()})
        if self._changes_own_access(actor, name, wanted, admin):
            self._record(actor, "user_change_refused", {
                "user": name, "groups": wanted, "admin": admin, "reason": "own account",
            })  # fmt: skip
            raise NotAllowed("only another administrator can change your own groups or role")
        user = self.parts.users.add(name, password, wanted, admin=admin)
        self._record(actor, "user_add", {
            "user": user.name, "groups": list(user.groups), "admin": user.admin,
        })  # fmt: skip
        return user

    def remove_user(self, actor: Actor, name: str) -> None:
        """Remove a user, and the API tokens that stood for them."""
        self.parts.users.remove(name)
        self.parts.tokens.remove_user(name)
        self._record(actor, "user_remove", {"user": name})

    # -- API tokens --------------------------------------------------------------------------

    def create_token(
        self, actor: Actor, user: str, expires_days: int | None = None, name: str = ""
    ) -> tuple[ApiToken, str]:
        """A new API token for `user` (UnknownUser when the identity provider doesn't know
        them; the token is theirs by the name as the directory spells it): its record, and its
        secret, which is shown this once and kept only as a hash."""
        user = self.known_user(user).name
        token, secret = self.parts.tokens.create(user, expires_days, name)
        self._record(actor, "token_create", {
            "user": user, "token_id": token.id, "expires": token.as_json()["expires"],
        })  # fmt: skip
        return token, secret

    def tokens(self, user: str | None = None) -> list[ApiToken]:
        return self.parts.tokens.list(user)

    def revoke_token(self, actor: Actor, token_id: str) -> ApiToken:
        token = self.parts.tokens.revoke(token_id)
        self._record(actor, "token_revoke", {"user": token.user, "token_id": token.id})
        return token

    def _changes_own_access(self, actor: Actor, name: str, groups: list[str], admin: bool) -> bool:
        if actor.name == OPERATOR or name != actor.name:
            return False
        current = self.parts.users.find(name)
        if current is None:
            return False
        if admin != current.admin:
            return True
        reads_everything = self.settings.access.admins_read_everything
        return not reads_everything and groups != sorted(current.groups)

    # -- documents ---------------------------------------------------------------------------

    def erase(self, actor: Actor, path: str | None = None, doc_id: str | None = None) -> Erasure:
        """Erase a document everywhere the appliance keeps it (`appliance.erase`)."""
        return erase(
            self.settings, path=path, doc_id=doc_id, by=actor.name,
            records=[self.parts.conversations, self.parts.feedback], store=self.parts.store,
            audit=self.parts.audit, audit_detail=actor.audit_detail(),
        )  # fmt: skip

    def ingest(self, actor: Actor, roots: Sequence[str], **options: Any) -> IngestReport:
        """One ingestion run over `roots` (`appliance.ingest_runs.run_ingestion`)."""
        from appliance.ingest_runs import run_ingestion

        return run_ingestion(self.settings, actor, roots, audit=self.parts.audit, **options)

    def ingest_in_background(
        self, actor: Actor, share: str, progress_file: Path, log_file: Path
    ) -> subprocess.Popen[bytes]:
        """An ingestion run of `share` in a process of its own (a page may be closed
        meanwhile), its progress kept in `progress_file`, recorded once as the actor's."""
        from appliance.ingest_runs import start_ingestion

        return start_ingestion(actor, share, progress_file, log_file)

    # -- the audit log -----------------------------------------------------------------------

    def _record(self, actor: Actor, action: str, detail: dict[str, Any]) -> None:
        self.parts.audit.record(actor.name, action, {**detail, **actor.audit_detail()})

    def _elapsed_ms(self, started: float) -> int:
        return round((self._clock() - started) * 1000)

    def close(self) -> None:
        self.parts.close()

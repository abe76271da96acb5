"""The Model Context Protocol server at `/mcp` (streamable HTTP, stateless, JSON replies):
tools `search` and `ask` over the application layer, acting as the bearer token's user.

A request without a valid token gets 401 before any tool runs, and is audited like any
other API call refused for its credentials.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl, BaseModel
from starlette.applications import Starlette

from appliance.actor import Actor
from appliance.core import Appliance
from appliance.errors import DirectoryUnavailable, Unauthorized
from appliance.replies import search_reply
from ops.api.limits import RateLimiter


class SearchHit(BaseModel):
    path: str
    page: int | None
    score: float
    text: str
    doc_id: str
    chunk_id: str


class SearchResult(BaseModel):
    hits: list[SearchHit]


class Citation(BaseModel):
    path: str
    page: int | None
    chunk_id: str


class AskResult(BaseModel):
    answer: str
    refused: bool
    citations: list[Citation]


class RateLimited(Exception):
    pass


class _TokenVerifier:
    def __init__(self, appliance: Appliance) -> None:
        self._appliance = appliance

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            actor = self._appliance.authenticate(token, "mcp")
        except Unauthorized as exc:
            self._appliance.record_denied(str(exc), "/mcp", None)
            return None
        except DirectoryUnavailable as exc:
            self._appliance.record_denied(f"directory unavailable: {exc}", "/mcp", None)
            return None
        return AccessToken(token=token, client_id=actor.token_id or "", subject=actor.name,
                           scopes=["rag"])  # fmt: skip


def mcp_app(
    appliance: Appliance, limiter: RateLimiter, max_request_bytes: int
) -> tuple[MCPServer, Starlette]:
    """The MCP server and its ASGI app (route `/mcp`), each tool call counted against its
    token's rate. The caller runs `server.session_manager.run()` in its lifespan."""
    server = MCPServer(
        "rag-appliance",
        instructions="Search and ask the organisation's documents; answers cite their sources.",
        log_level="WARNING",
        token_verifier=_TokenVerifier(appliance),
        # Only advertised, never fetched: tokens are the appliance's own.
        auth=AuthSettings(
            issuer_url=AnyHttpUrl("http://appliance.invalid"),
            resource_server_url=None,
            required_scopes=["rag"],
        ),
    )

    def caller() -> Actor:
        access = get_access_token()
        if access is None:
            raise Unauthorized("no bearer token")
        actor = appliance.authenticate(access.token, "mcp")
        wait = limiter.retry_after(actor.token_id or actor.name)
        if wait:
            raise RateLimited(f"too many requests for this token; retry in {wait} s")
        return actor

    @server.tool()
    async def search(query: str, k: int = 5) -> SearchResult:
        """Find the passages of the documents the caller may read that best match `query`,
        best first, each with its file's path and page."""
        actor = caller()
        hits = await anyio.to_thread.run_sync(lambda: appliance.search(actor, query, k))
        return SearchResult.model_validate(search_reply(hits))

    @server.tool()
    async def ask(question: str) -> AskResult:
        """Answer `question` from the documents the caller may read, with `[n]` markers and
        the cited files; `refused` when the documents don't hold the answer."""
        actor = caller()
        asked = await anyio.to_thread.run_sync(lambda: appliance.ask(actor, question))
        reply: dict[str, Any] = asked.answer.as_json()
        return AskResult.model_validate(reply)

    app = server.streamable_http_app(
        stateless_http=True, json_response=True, max_request_body_size=max_request_bytes,
        # The bearer token, not the Host header, is what guards the tools; the front door
        # forwards requests under the appliance's own name.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )  # fmt: skip
    return server, app

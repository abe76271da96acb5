"""The HTTP API (`rag serve`): OpenAI-compatible chat with citations, search, and MCP, over
the same application layer as the UI and the CLI.

Every request carries `Authorization: Bearer TOKEN` (`rag tokens create USER`) and acts as
that token's user, with that user's read scope. A missing, wrong, expired or revoked token
gets 401 and is audited (`api_denied`); a token over its rate gets 429 with `Retry-After`.

Chat streaming: the answer is checked against its sources before it is kept, so a stream
sends the role at once, an SSE comment for each token the model writes meanwhile (which keeps
proxies and clients from timing out), then the kept answer and, in its last chunk, the
`citations` and `refused` fields, then `data: [DONE]`.

No documentation page: FastAPI's loads its scripts from a CDN.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.middleware.cors import CORSMiddleware

from appliance.actor import Actor
from appliance.core import Appliance, Asked
from appliance.errors import BadRequest, DirectoryUnavailable, Unauthorized
from appliance.replies import search_reply
from llm.answer import Answer
from llm.errors import LLMError
from ops.api.limits import RateLimiter
from ops.api.mcp_tools import mcp_app
from retrieval.errors import QueryTooLong, RetrievalError
from retrieval.store import SearchFilters

MODEL_ID = "rag"


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind
        self.headers = headers or {}


def create_app(appliance: Appliance) -> FastAPI:
    settings = appliance.settings.api
    limiter = RateLimiter(settings.requests_per_minute)

    def admit(actor: Actor) -> None:
        wait = limiter.retry_after(actor.token_id or actor.name)
        if wait:
            raise ApiError(
                429, f"too many requests for this token; retry in {wait} s",
                "rate_limit_exceeded", {"Retry-After": str(wait)},
            )  # fmt: skip

    mcp_server, mcp_asgi = mcp_app(appliance, limiter, settings.max_request_bytes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        async with mcp_server.session_manager.run():
            yield
        appliance.close()

    app = FastAPI(
        title="rag-appliance", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = {"error": {"message": exc.message, "type": exc.kind, "code": None}}
        return JSONResponse(body, exc.status, headers=exc.headers)

    def caller(request: Request) -> Actor:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        address = request.client.host if request.client else None
        try:
            if scheme.lower() != "bearer" or not secret.strip():
                raise Unauthorized("no bearer token")
            actor = appliance.authenticate(secret.strip(), "api")
        except Unauthorized as exc:
            appliance.record_denied(str(exc), request.url.path, address)
            raise ApiError(
                401, "a valid API token is required: create one with `rag tokens create USER`",
                "invalid_request_error", {"WWW-Authenticate": "Bearer"},
            ) from exc  # fmt: skip
        except DirectoryUnavailable as exc:
            appliance.record_denied(f"directory unavailable: {exc}", request.url.path, address)
            raise ApiError(
                503, "the organisation's directory cannot be reached to check this token's "
                "user; try again shortly", "service_unavailable", {"Retry-After": "30"},
            ) from exc  # fmt: skip
        admit(actor)
        return actor

    async def body_of(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > settings.max_request_bytes
        ):
            raise ApiError(413, "request body too large", "invalid_request_error")
        raw = b""
        async for part in request.stream():
            raw += part
            if len(raw) > settings.max_request_bytes:
                raise ApiError(413, "request body too large", "invalid_request_error")
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ApiError(400, "the body is not JSON", "invalid_request_error") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", "invalid_request_error")
        return body

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        caller(request)
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "appliance"}],
        }

    @app.post("/v1/search")
    async def search(request: Request) -> Any:
        actor = caller(request)
        body = await body_of(request)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ApiError(400, "give the query as a non-empty string", "invalid_request_error")
        k = body.get("k")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 50):
            raise ApiError(400, "k must be an integer from 1 to 50", "invalid_request_error")
        filters = _filters(body.get("filters"))
        hits = await _in_thread(lambda: appliance.search(actor, query, k, filters))
        return search_reply(hits)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        actor = caller(request)
        body = await body_of(request)
        question, history = _conversation(body.get("messages"))
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.get("stream") is True:
            events = appliance.ask_streaming(actor, question, history=history)
            return StreamingResponse(
                _sse(events, completion_id), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )  # fmt: skip
        asked = await _in_thread(lambda: appliance.ask(actor, question, history=history))
        return _completion(asked.answer, completion_id)

    app.mount("/", mcp_asgi)  # last: the routes above match first; its own route is /mcp
    return app


async def _in_thread(work: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    try:
        return await run_in_threadpool(work)
    except (QueryTooLong, BadRequest) as exc:
        raise ApiError(400, str(exc), "invalid_request_error") from exc
    except LLMError as exc:
        raise ApiError(503, f"the language model is unavailable: {exc}", "server_error") from exc
    except RetrievalError as exc:
        raise ApiError(503, f"the index is unavailable: {exc}", "server_error") from exc


def _filters(raw: object) -> SearchFilters | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ApiError(
            400, 'filters must be an object, e.g. {"type": "pdf"}', "invalid_request_error"
        )
    try:
        return SearchFilters.parse([f"{key}={value}" for key, value in raw.items()])
    except ValueError as exc:
        raise ApiError(400, str(exc), "invalid_request_error") from exc


def _text(content: object) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )  # fmt: skip
    return ""


def _conversation(messages: object) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the (question, answer) pairs before it."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "invalid_request_error")
    turns = [(str(m.get("role")), _text(m.get("content"))) for m in messages if isinstance(m, dict)]
    users = [i for i, (role, text) in enumerate(turns) if role == "user" and text.strip()]
    if not users:
        raise ApiError(400, "no user message to answer", "invalid_request_error")
    last = users[-1]
    history: list[tuple[str, str]] = []
    pending: str | None = None
    for role, text in turns[:last]:
        if role == "user":
            pending = text
        elif role == "assistant" and pending is not None:
            history.append((pending, text))
            pending = None
    return turns[last][1].strip(), history


def _citations(answer: Answer) -> list[dict[str, object]]:
    return [citation.as_json() for citation in answer.citations]


def _completion(answer: Answer, completion_id: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "citations": _citations(answer),
        "refused": answer.refused,
    }


def _chunk(completion_id: str, delta: dict[str, Any], finish: str | None = None) -> str:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def _sse(events: Iterator[Any], completion_id: str) -> Iterator[str]:
    yield _chunk(completion_id, {"role": "assistant", "content": ""})
    try:
        for event in events:
            if not isinstance(event, Asked):
                yield ": the answer is being checked against its sources\n\n"
                continue
            answer = event.answer
            yield _chunk(completion_id, {"content": answer.text})
            last = json.loads(_chunk(completion_id, {}, "stop")[len("data: ") :])
            last["citations"], last["refused"] = _citations(answer), answer.refused
            yield f"data: {json.dumps(last, ensure_ascii=False)}\n\n"
    except (QueryTooLong, BadRequest, LLMError, RetrievalError) as exc:
        error = {"error": {"message": str(exc), "type": "server_error", "code": None}}
        yield f"data: {json.dumps(error)}\n\n"
    yield "data: [DONE]\n\n"

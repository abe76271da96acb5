"""The chat client: the happy path on the real vLLM server, faults injected with a mock."""

from __future__ import annotations

import httpx
import pytest

from llm.build import build_chat_model
from llm.client import ChatModel, Message, http_client
from llm.errors import LLMResponseError, LLMUnavailable
from settings import Settings
from tests.conftest import free_port

HELLO: list[Message] = [
    Message(role="system", content="You are a helpful assistant."),
    Message(role="user", content="What is the capital of France? Answer in one sentence."),
]


def mocked(handler: httpx.MockTransport) -> ChatModel:
    return ChatModel(httpx.Client(base_url="http://llm.test/v1/", transport=handler), "m")


def test_complete_against_the_real_server(llm_settings: Settings) -> None:
    assert "Paris" in build_chat_model(llm_settings).complete(HELLO)


def test_stream_against_the_real_server_yields_tokens(llm_settings: Settings) -> None:
    tokens = list(build_chat_model(llm_settings).stream(HELLO))
    assert len(tokens) > 3
    assert "Paris" in "".join(tokens)


def test_a_server_error_is_a_response_error() -> None:
    model = mocked(httpx.MockTransport(lambda r: httpx.Response(500, text="engine dead")))
    with pytest.raises(LLMResponseError, match="500"):
        model.complete(HELLO)
    with pytest.raises(LLMResponseError, match="500"):
        list(model.stream(HELLO))


def test_a_timeout_is_unavailable() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    model = mocked(httpx.MockTransport(timeout))
    with pytest.raises(LLMUnavailable, match="timed out"):
        model.complete(HELLO)
    with pytest.raises(LLMUnavailable, match="timed out"):
        list(model.stream(HELLO))


def test_a_malformed_body_is_a_response_error() -> None:
    model = mocked(httpx.MockTransport(lambda r: httpx.Response(200, json={"choices": []})))
    with pytest.raises(LLMResponseError, match="unexpected"):
        model.complete(HELLO)


def test_a_closed_port_is_unavailable() -> None:
    model = ChatModel(http_client(f"http://127.0.0.1:{free_port()}/v1", 5.0), "m")
    with pytest.raises(LLMUnavailable, match="unreachable"):
        model.complete(HELLO)


def test_requests_carry_the_model_and_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    http = httpx.Client(
        base_url="http://llm.test/v1/",
        transport=httpx.MockTransport(record),
        headers={"Authorization": "Bearer k"},
    )
    assert ChatModel(http, "served-name").complete(HELLO) == "ok"
    assert seen[0].url.path == "/v1/chat/completions"
    assert b'"model":"served-name"' in seen[0].content.replace(b" ", b"")
    assert seen[0].headers["Authorization"] == "Bearer k"

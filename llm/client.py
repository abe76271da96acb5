"""A client for an OpenAI-compatible `/v1/chat/completions` (vLLM)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

import httpx

from llm.errors import LLMResponseError, LLMUnavailable


class Message(TypedDict):
    role: str
    content: str


class ChatModel:
    """Chat completions over HTTP. The `httpx.Client` is passed in, so tests can hand it a
    transport that injects faults; its base URL is the server's `/v1` root."""

    def __init__(
        self,
        http: httpx.Client,
        model: str,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> None:
        self._http = http
        self.model = model
        self._max_tokens = max_tokens
        self._temperature = temperature

    def complete(self, messages: Sequence[Message]) -> str:
        response = self._post(self._body(messages, stream=False))
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMResponseError(f"unexpected completion body from {self._url()}") from exc

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        body = self._body(messages, stream=True)
        try:
            with self._http.stream("POST", "chat/completions", json=body) as response:
                self._check(response, streamed=True)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    delta = _delta(data)
                    if delta:
                        yield delta
        except httpx.TimeoutException as exc:
            raise LLMUnavailable(f"LLM server at {self._url()} timed out") from exc
        except httpx.TransportError as exc:
            raise LLMUnavailable(f"LLM server at {self._url()} is unreachable: {exc}") from exc

    def _body(self, messages: Sequence[Message], stream: bool) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": self._max_tokens,
            "temperature": self._temperature,
            "stream": stream,
        }

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self._http.post("chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LLMUnavailable(f"LLM server at {self._url()} timed out") from exc
        except httpx.TransportError as exc:
            raise LLMUnavailable(f"LLM server at {self._url()} is unreachable: {exc}") from exc
        self._check(response, streamed=False)
        return response

    def _check(self, response: httpx.Response, streamed: bool) -> None:
        if response.is_success:
            return
        if streamed:
            response.read()
        detail = response.text[:200].replace("\n", " ")
        raise LLMResponseError(
            f"LLM server at {self._url()} answered {response.status_code}: {detail}"
        )

    def _url(self) -> str:
        return str(self._http.base_url)


def _delta(data: str) -> str:
    try:
        event = json.loads(data)
        return str(event["choices"][0]["delta"].get("content") or "")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LLMResponseError("malformed streamed chunk from the LLM server") from exc


def http_client(base_url: str, timeout_seconds: float, api_key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # trust_env=False: no proxy from the environment; the server is inside the network.
    return httpx.Client(
        base_url=base_url.rstrip("/") + "/",
        timeout=httpx.Timeout(timeout_seconds, connect=5.0),
        headers=headers,
        trust_env=False,
    )

"""Errors of the llm package.

LLMError
├── LLMUnavailable     the server can't be reached or timed out
└── LLMResponseError   the server answered with an error status or a malformed body
"""


class LLMError(Exception):
    """Base of every error raised by the llm package."""


class LLMUnavailable(LLMError):
    pass


class LLMResponseError(LLMError):
    pass

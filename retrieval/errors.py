"""Errors of the retrieval package.

RetrievalError
├── StoreUnavailable     the vector store can't be opened or reached
├── EmbedderUnavailable  the embedding model folder is missing or unreadable
├── RerankerUnavailable  the configured reranker model folder is missing or unreadable
└── UnknownUser          a user name that the user directory doesn't know
"""


class RetrievalError(Exception):
    """Base of every error raised by the retrieval package."""


class StoreUnavailable(RetrievalError):
    pass


class EmbedderUnavailable(RetrievalError):
    pass


class RerankerUnavailable(RetrievalError):
    pass


class UnknownUser(RetrievalError):
    pass

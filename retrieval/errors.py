"""Errors of the retrieval package.

RetrievalError
├── StoreUnavailable     the vector store can't be opened or reached
├── EmbedderUnavailable  the embedding model folder is missing or unreadable
├── RerankerUnavailable  the configured reranker model folder is missing or unreadable
├── QueryTooLong         a question or search longer than the configured limit
└── IndexModelMismatch   the index holds vectors of another embedding model than configured
"""


class RetrievalError(Exception):
    """Base of every error raised by the retrieval package."""


class StoreUnavailable(RetrievalError):
    pass


class EmbedderUnavailable(RetrievalError):
    pass


class RerankerUnavailable(RetrievalError):
    pass


class QueryTooLong(RetrievalError):
    """A question or search over `retrieval.max_question_chars`: refused before the index is
    searched. Carries the lengths, never the text."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"the question has {length:,} characters, more than the {limit:,} allowed; "
            "shorten it and ask again"
        )
        self.length = length
        self.limit = limit


class IndexModelMismatch(RetrievalError):
    """The index was built with another embedding model than the configured one: its vectors
    and the queries' would not be comparable, so nothing is searched or added."""

    def __init__(self, index_model: str, configured_model: str) -> None:
        super().__init__(
            f"the index was built with the embedding model {index_model}, not the configured "
            f"{configured_model}; rebuild it with `rag ingest --rebuild PATH...` (every root "
            "the index holds), or configure the index's model again"
        )
        self.index_model = index_model
        self.configured_model = configured_model

"""The index contract: chunks, embeddings, the vector store and the retriever."""

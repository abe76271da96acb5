"""The language model side: the OpenAI-compatible client, prompts, answers, the local server."""

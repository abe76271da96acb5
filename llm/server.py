"""How the local LLM server is started: vLLM's OpenAI-compatible server on a model folder.

On the appliance the same server runs as the `vllm` service on the GPUs; here its CPU build
runs from its own virtual environment (its torch and transformers pins stay out of ours).
"""

from __future__ import annotations

import os

from settings import OFFLINE_ENVIRONMENT, Settings


def server_command(settings: Settings) -> list[str]:
    llm = settings.llm
    command = [
        str(llm.server_python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(settings.llm_model_dir.resolve()),
        "--served-model-name",
        llm.model,
        "--host",
        llm.host,
        "--port",
        str(llm.port),
        "--max-model-len",
        str(llm.max_model_len),
        "--dtype",
        "bfloat16",
        "--enable-prefix-caching",
        "--disable-uvicorn-access-log",
    ]
    if llm.api_key:
        command += ["--api-key", llm.api_key.get_secret_value()]
    return command


def server_environment(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    env.update(OFFLINE_ENVIRONMENT)
    env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.llm.kv_cache_gib)
    # Its own address, which vLLM would otherwise learn by routing a UDP socket to 8.8.8.8.
    env["VLLM_HOST_IP"] = "127.0.0.1"
    return env


def health_url(settings: Settings) -> str:
    return f"http://{settings.llm.host}:{settings.llm.port}/health"

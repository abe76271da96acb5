"""How the local LLM server is started: vLLM's OpenAI-compatible server on a model folder.

On the appliance the same server runs as the `vllm` service on the GPUs; here its CPU build
runs from its own virtual environment (its torch and transformers pins stay out of ours).

The server's API key (`llm.api_key`) goes to it in its environment (`VLLM_API_KEY`), never in
its arguments, which every local account can read (`ps`, /proc/PID/cmdline); without a key,
one inherited from the caller's environment is dropped, so the server and its clients agree.
"""

from __future__ import annotations

import os

from settings import OFFLINE_ENVIRONMENT, Settings

# Where vLLM's OpenAI-compatible server reads its API key when `--api-key` is not given.
API_KEY_VARIABLE = "VLLM_API_KEY"


def server_command(settings: Settings) -> list[str]:
    llm = settings.llm
    return [
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


def server_environment(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    env.update(OFFLINE_ENVIRONMENT)
    env["VLLM_CPU_KVCACHE_SPACE"] = str(settings.llm.kv_cache_gib)
    # Its own address, which vLLM would otherwise learn by routing a UDP socket to 8.8.8.8.
    env["VLLM_HOST_IP"] = "127.0.0.1"
    env.pop(API_KEY_VARIABLE, None)
    if settings.llm.api_key:
        env[API_KEY_VARIABLE] = settings.llm.api_key.get_secret_value()
    return env


def health_url(settings: Settings) -> str:
    return f"http://{settings.llm.host}:{settings.llm.port}/health"

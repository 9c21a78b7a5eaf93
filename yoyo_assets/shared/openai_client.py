"""The one client of OpenAI-compatible endpoints (vLLM's server, the Yo-Yo gateway) that every
caller in the package uses: chat completions with a retry policy, the served models, the
health probe of a managed server, and loading LoRA adapters into a running vLLM server."""

from __future__ import annotations

from typing import Any

import httpx
import tenacity

from .http_retry import is_transient, tls_context


class ChatClient:
    """`POST <base_url>/v1/chat/completions`, used as `async with ChatClient(...) as client`.

    `timeout_s` bounds one request (seconds; connecting: at most 30 s); `connections` the
    connections kept open (match the caller's concurrency). A transient failure (connection
    error, timeout, 429, 5xx: `http_retry.is_transient`) is tried again up to `attempts` times
    in all, with exponential backoff and full jitter (tenacity's `wait_random_exponential`,
    0.5 s growing to at most 30 s).
    """

    def __init__(self, base_url: str, timeout_s: float = 900.0, attempts: int = 5,
                 connections: int = 16) -> None:
        self.attempts = attempts
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=min(30.0,
                                                                                     timeout_s)),
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections), verify=tls_context())

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._http.aclose()

    async def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The server's JSON reply to one chat-completions request body.

        Raises:
            httpx.HTTPStatusError: a 4xx answer (final), or a 429/5xx one after `attempts`.
            httpx.TransportError: the server could not be reached after `attempts`.
        """
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(multiplier=0.5, max=30),
            stop=tenacity.stop_after_attempt(self.attempts), reraise=True)
        async for attempt in retrying:
            with attempt:
                response = await self._http.post("/v1/chat/completions", json=payload)
                response.raise_for_status()
                return response.json()
        raise AssertionError("unreachable: tenacity re-raises the last error")


def served_models(base_url: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The `data` entries of `GET <base_url>/v1/models` (vLLM adds `max_model_len`).

    Raises:
        httpx.HTTPError: unreachable, or a 4xx/5xx answer.
        ValueError: the answer is not JSON.
    """
    response = httpx.get(f"{base_url.rstrip('/')}/v1/models", timeout=timeout_s,
                         verify=tls_context())
    response.raise_for_status()
    return list(response.json().get("data", []))


def is_healthy(base_url: str, timeout_s: float = 5.0) -> bool:
    """Whether `GET <base_url>/health` answers 200 within `timeout_s` seconds (vLLM's probe)."""
    try:
        return httpx.get(f"{base_url.rstrip('/')}/health", timeout=timeout_s,
                         verify=tls_context()).status_code == 200
    except httpx.HTTPError:
        return False


class RuntimeLoadingOff(Exception):
    """The server has no `POST /v1/load_lora_adapter` (vLLM started without
    VLLM_ALLOW_RUNTIME_LORA_UPDATING, or not vLLM)."""


def load_lora_adapter(base_url: str, name: str, folder: str, timeout_s: float = 300.0) -> None:
    """Load the PEFT adapter in `folder` (a path the server can read) into the running vLLM
    server at `base_url`; requests then name it `name` as their model. Not retried: a refusal
    is about the adapter, not the connection.

    Raises:
        RuntimeLoadingOff: the server does not offer runtime loading.
        httpx.HTTPStatusError: the server refused the adapter (vLLM: 400 bad request or name in
            use, 404 folder not found, 500 weights it cannot load).
        httpx.TransportError: the server could not be reached.
    """
    response = httpx.post(f"{base_url.rstrip('/')}/v1/load_lora_adapter",
                          json={"lora_name": name, "lora_path": folder}, timeout=timeout_s,
                          verify=tls_context())
    # An absent route is FastAPI's {"detail": "Not Found"}; vLLM's own refusals carry "error".
    if response.status_code == 404 and "error" not in response.text:
        raise RuntimeLoadingOff(f"{base_url} does not load LoRA adapters at runtime")
    response.raise_for_status()


def unload_lora_adapter(base_url: str, name: str, timeout_s: float = 60.0) -> None:
    """Remove the adapter `name` that `load_lora_adapter` loaded.

    Raises:
        httpx.HTTPError: refused (404: not loaded) or unreachable.
    """
    response = httpx.post(f"{base_url.rstrip('/')}/v1/unload_lora_adapter",
                          json={"lora_name": name}, timeout=timeout_s, verify=tls_context())
    response.raise_for_status()

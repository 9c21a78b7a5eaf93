"""Which HTTP failures are worth another attempt, for the tenacity policies of the pipeline's
HTTP clients (extraction requests to vLLM, the graph service sink)."""

import httpx


def is_transient(exc: BaseException) -> bool:
    """True for a connection or timeout error (`httpx.TransportError`) and for a 429 or 5xx
    answer (`httpx.HTTPStatusError`); a 4xx answer is the request's own fault and is final."""
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False

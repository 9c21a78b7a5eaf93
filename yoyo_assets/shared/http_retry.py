"""What the pipeline's HTTP clients (extraction requests to vLLM, the graph service sink) share:
which failures are worth another attempt (their tenacity policies), and one TLS context."""

import functools
import ssl

import httpx


def is_transient(exc: BaseException) -> bool:
    """True for a connection or timeout error (`httpx.TransportError`) and for a 429 or 5xx
    answer (`httpx.HTTPStatusError`); a 4xx answer is the request's own fault and is final."""
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context of every HTTP client in this process: httpx's default (certifi's CA
    bundle, or SSL_CERT_FILE / SSL_CERT_DIR from the environment), built once. Without it httpx
    builds one per client, ~25 ms of reading certificates each, even for a plain-HTTP server
    on loopback that a health probe asks every second."""
    return httpx.create_ssl_context()

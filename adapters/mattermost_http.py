"""The HTTP client under mattermostautodriver, where the driver's own is too trusting.

- JSON is recognised by its media type. The driver compares `Content-Type` with exactly
  "application/json" and otherwise hands back the raw response, so a reverse proxy that
  says "application/json; charset=utf-8" turned every GET into garbage for the adapter.
- A 429 is waited out, as often as the server asks, until a deadline. Mattermost's rate
  limiter (`app/ratelimit.go`) refuses with a plain-text "limit exceeded" and says in
  `Retry-After` / `X-RateLimit-Reset` how many seconds to wait; the driver waits at most
  once, and never for an upload (it cannot tell that a bytes body can be sent again).
  How long a request may wait is the caller's: `wait_for_rate_limits(seconds)` around an
  answer, else the client's default.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from mattermostautodriver.client import AsyncClient
from mattermostautodriver.exceptions import TooManyRequests

log = logging.getLogger(__name__)

FIRST_WAIT = 1.0  # seconds, when a 429 does not say how long (a proxy's): then doubled

# The monotonic time after which no more rate-limit waits start, for the current task.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("mattermost_rate_limit_deadline",
                                                                        default=None)


@contextmanager
def wait_for_rate_limits(seconds: float) -> Iterator[None]:
    """Requests made inside wait out 429s for at most `seconds` in all (0: not at all)."""
    token = _deadline.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def is_json(response: httpx.Response) -> bool:
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


class MattermostHttp(AsyncClient):
    """`options["rate_limit_wait"]`: seconds a request may spend waiting out 429s when
    no `wait_for_rate_limits` is in force."""

    def _retry_delay(self, method: str, attempt: int, data: Any = None, files: Any = None,
                     response: httpx.Response | None = None) -> float | None:
        if response is not None and response.status_code == 429:
            return None  # raised as TooManyRequests, and waited for in make_request
        return super()._retry_delay(method, attempt, data=data, files=files, response=response)

    async def make_request(self, method: str, endpoint: str, options: Any = None, params: Any = None,
                           data: Any = None, files: Any = None, basepath: Any = None) -> httpx.Response:
        loop = asyncio.get_running_loop()
        deadline = _deadline.get()
        if deadline is None:
            deadline = loop.time() + float(self._options.get("rate_limit_wait", 0.0))
        fallback = FIRST_WAIT
        while True:
            try:
                return await super().make_request(method, endpoint, options=options, params=params, data=data,
                                                  files=files)
            except TooManyRequests as err:
                wait = err.retry_after if err.retry_after is not None else fallback
                fallback *= 2
                if loop.time() + wait > deadline:
                    raise
                log.info("mattermost: rate limited on %s %s: waiting %.1f s as the server asks",
                         method.upper(), endpoint, wait)
                await asyncio.sleep(wait)

    async def get(self, endpoint: str, options: Any = None, params: Any = None) -> Any:
        response = await self.make_request("get", endpoint, options=options, params=params)
        if not is_json(response):
            return response
        try:
            return response.json()
        except ValueError:
            return response

"""What a door gives the HTTP server: routes to handlers, and the reply a handler returns."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from service.errors import InvalidArgument

JSON = "application/json"


@dataclass
class Reply:
    """A handler's answer: body bytes, status, content type, extra headers, and for predict calls the
    (model, version, variant, signature) labels of the version that served it (for the metrics)."""

    body: bytes
    status: int = 200
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    labels: tuple[str, str, str, str] | None = None


@dataclass
class Call:
    """One request as a handler sees it: the aiohttp request, the route's path parameters, the
    per-request variant (header x-batchwise-variant), and the body reader the server set up with its limits."""

    request: web.BaseRequest
    params: dict[str, str]
    variant: str | None
    read_body: Callable[[], Awaitable[bytes]]
    parse_json: Callable[[bytes, str, bool], Any]
    model: str | None = None  # set by the handler once known (labels refused calls in the metrics)

    async def json(self, non_finite: bool = False) -> Any:
        """The body parsed as JSON under the size limits (ResourceExhausted / InvalidArgument); with
        `non_finite`, NaN, Infinity and -Infinity are read as numbers (TF Serving's REST API does)."""
        return self.parse_json(await self.read_body(), "request body", non_finite)


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """`method` + a full-match `pattern` on the path -> `handler`; `template` names it in the metrics.

    `predict` routes count in the predict metrics; `open` routes (health) need no token and are
    answered during the drain.
    """

    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    predict: bool = False
    open: bool = False


def positive_version(text: str | None, field_name: str = "version") -> int | None:
    """A version path segment as a positive int (None if absent); InvalidArgument otherwise."""
    if text is None:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise InvalidArgument(f"{field_name}: expected a positive integer, got {text[:64]!r}")
    return int(text)

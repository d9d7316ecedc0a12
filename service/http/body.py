"""Request bodies under limits: bytes before reading, JSON nesting depth and value count before parsing.

The checks before parsing run at C speed on the raw bytes (bytes.replace / translate / count and
one regex), so an oversized or deeply nested document is refused without building any of it:
  - escaped backslashes and quotes are dropped, then every string literal is emptied, so that
    brackets and commas inside strings do not count;
  - values <= commas + 1 (an upper bound: a key-value pair counts once, which errs on the safe side);
  - depth: with `{}` folded into `[]`, each pass of `replace(b"[]", b"")` removes exactly one
    level of nesting, so a document that is not empty after `max_depth` passes is deeper.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from aiohttp import ClientPayloadError, web

from service.errors import InvalidArgument, ResourceExhausted
from service.http import jsondoc

_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but the four brackets
_FOLD = bytes.maketrans(b"{}", b"[]")


async def read_body(request: web.BaseRequest, max_bytes: int) -> bytes:
    """The whole request body; ResourceExhausted before reading if Content-Length is over `max_bytes`,
    or as soon as a body without one grows past it. InvalidArgument for a compressed body (the limit
    holds for what is sent, so a small compressed body must not expand into a large one) or a body
    that ends early."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InvalidArgument(f"Content-Encoding: {encoding[:32]!r} is not supported; send the body uncompressed")
    try:
        return await _read(request, max_bytes)
    except (asyncio.IncompleteReadError, ClientPayloadError, ConnectionError) as exc:
        raise InvalidArgument(f"request body: ended before its end ({type(exc).__name__})") from None


async def _read(request: web.BaseRequest, max_bytes: int) -> bytes:
    length = request.content_length
    if length is not None:
        if length > max_bytes:
            raise ResourceExhausted(
                f"request body: {length} bytes is over the limit of {max_bytes} bytes (http.max_body_bytes)"
            )
        return await request.content.readexactly(length) if length else b""
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise ResourceExhausted(f"request body: over the limit of {max_bytes} bytes (http.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def check_json_size(raw: bytes, max_depth: int, max_values: int) -> None:
    """Raise ResourceExhausted if the JSON text `raw` nests deeper than `max_depth` or holds more than
    `max_values` values (bounds computed without parsing; see the module docstring)."""
    _check_structure(jsondoc.structure(raw), max_depth, max_values)


def parse_json(
    raw: bytes, max_depth: int, max_values: int, what: str = "request body", *, non_finite: bool = False
) -> Any:
    """`raw` parsed after the size checks, numeric tensors as arrays (service/http/jsondoc.py);
    InvalidArgument naming the position if it is not JSON.

    With `non_finite`, the bare words NaN, Infinity and -Infinity are numbers too, as TF Serving's
    REST API reads them. Such a document, which strict JSON refuses, is parsed again by the standard
    library's json (a slower path, with tensors as lists), after the same size checks."""
    structure = jsondoc.structure(raw)
    _check_structure(structure, max_depth, max_values)
    try:
        return jsondoc.loads(raw, text_structure=structure)
    except orjson.JSONDecodeError as exc:
        strict_error = exc
    if non_finite and (b"NaN" in raw or b"Infinity" in raw):
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            pass  # the strict parser's message names the first problem as well
    raise InvalidArgument(f"{what}: not valid JSON: {strict_error}")


def _check_structure(structure: bytes, max_depth: int, max_values: int) -> None:
    values = structure.count(b",") + 1
    if values > max_values:
        raise ResourceExhausted(
            f"request body: about {values} JSON values is over the limit of {max_values} (http.max_json_elements)"
        )
    brackets = structure.translate(_FOLD, _BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return
        brackets = brackets.replace(b"[]", b"")
    if brackets and brackets.count(b"[") == brackets.count(b"]"):  # unbalanced: the parser says where
        raise ResourceExhausted(f"request body: JSON nested deeper than {max_depth} levels (http.max_json_depth)")

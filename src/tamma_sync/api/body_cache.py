"""Response bodies cached while the catalog — definitions and their counts — is unchanged.

A dashboard's list of definitions with their counts is the same for every viewer until a
write changes a definition or a count, and building it means summing thousands of kept
counts and writing out every definition. So it is built once per catalog revision
(`Store.catalog_revision`) and served from memory until the revision moves on.

A cached body runs to megabytes; what is done to it once is done for every request that
gets it. Its entity tag lets a poller that already has it get `304 Not Modified` instead,
and it is gzipped once, on the first request that accepts gzip, for all that follow.

The revision is one for all tenants, so it never shows: the entity tag is a digest of the
body alone, which one tenant's writes leave as it is for every other tenant. (A tag
carrying the revision let a tenant count the others' writes by polling its own list.) A
body rebuilt at a new revision with the same bytes is the one cached, gzip and all.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from http import HTTPStatus

from fastapi import Request, Response

from tamma_sync.api.responses import JsonBytes

#: zlib's default: 1,000 definitions' 3.6 MB to about 270 KB in 27 ms of one thread, once
#: per cached body; level 1 takes 12 ms and sends 38 % more.
GZIP_LEVEL = 6

#: Every request asks again (the body changes with any write) and only the caller may
#: keep it (it is the caller's tenant's).
CACHE_CONTROL = "private, no-cache"


class CachedBody:
    """One cached body: its bytes, its entity tag, and once asked for, its gzip."""

    def __init__(self, revision: int, body: bytes) -> None:
        self.revision = revision
        self.body = body
        # Weak: the same tag for the identity and the gzip encoding of the same content.
        # A digest of the content alone, cut to 128 bits: SHA-256 takes 2 ms for 3.6 MB,
        # once per cached body.
        self.etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
        self._gzipped: asyncio.Future[bytes] | None = None

    def _gzip(self) -> Awaitable[bytes]:
        """The body gzipped, compressed in a worker thread (zlib lets go of the GIL) by
        the first caller; those arriving meanwhile wait for the same result."""
        if self._gzipped is None:
            self._gzipped = asyncio.ensure_future(
                asyncio.to_thread(gzip.compress, self.body, GZIP_LEVEL, mtime=0)
            )
        return asyncio.shield(self._gzipped)

    async def response(self, request: Request) -> Response:
        """`304` if the caller holds this body already, else the body, gzipped if the
        caller accepts it."""
        headers = {"ETag": self.etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        if _matches(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=HTTPStatus.NOT_MODIFIED, headers=headers)
        if _accepts_gzip(request.headers.get("accept-encoding")):
            headers["Content-Encoding"] = "gzip"
            return JsonBytes(await self._gzip(), headers=headers)
        return JsonBytes(self.body, headers=headers)


class BodyCache:
    """Bodies by key, each with the catalog revision it was built at; the least recently
    used goes first once more than `capacity` are cached."""

    def __init__(self, capacity: int = 8) -> None:
        self._capacity = capacity
        self._bodies: OrderedDict[Hashable, CachedBody] = OrderedDict()
        self._building = asyncio.Lock()

    async def get(
        self, key: Hashable, revision: int, build: Callable[[], Awaitable[bytes]]
    ) -> CachedBody:
        """The body cached for `key` at `revision`, else `build()`'s. Read `revision` before
        building: the body then shows that revision or a later one, never an earlier."""
        cached = self._current(key, revision)
        if cached is not None:
            return cached
        async with self._building:  # requests arriving together build it once
            cached = self._current(key, revision)
            if cached is None:
                cached = CachedBody(revision, await build())
                newest = self._bodies.get(key)
                if newest is None or newest.revision <= revision:
                    if newest is not None and newest.etag == cached.etag:
                        newest.revision, cached = revision, newest
                    self._bodies[key] = cached
                    self._bodies.move_to_end(key)
                    while len(self._bodies) > self._capacity:
                        self._bodies.popitem(last=False)
        return cached

    def _current(self, key: Hashable, revision: int) -> CachedBody | None:
        cached = self._bodies.get(key)
        if cached is None or cached.revision != revision:
            return None
        self._bodies.move_to_end(key)
        return cached


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag`, compared weakly (RFC 9110 13.1.2)."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header admits gzip: by name, else by `*`, at a
    quality above 0."""
    qualities: dict[str, float] = {}
    for coding in (accept_encoding or "").split(","):
        name, _, parameter = coding.partition(";")
        quality = parameter.strip().lower().removeprefix("q=")
        try:
            qualities[name.strip().lower()] = float(quality) if quality else 1.0
        except ValueError:
            continue
    return qualities.get("gzip", qualities.get("x-gzip", qualities.get("*", 0.0))) > 0

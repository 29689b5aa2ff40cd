"""One TLS context for every HTTP client the tests make.

httpx builds a context for each client it creates, loading the CA bundle: about 25 ms of
CPU. The suite makes a few thousand clients (all over plain HTTP to loopback), which was a
minute of CPU spent on certificates never used."""

from __future__ import annotations

import httpx

TLS = httpx.create_ssl_context()

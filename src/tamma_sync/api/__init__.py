"""The HTTP API: the Tamma-compatible routes, extensions, SSE and the dashboard."""

from tamma_sync.api.app import create_app

__all__ = ["create_app"]

"""sse_service: one Home Assistant WebSocket fanned out to many browsers as Server-Sent Events."""

__version__ = "0.1.0"

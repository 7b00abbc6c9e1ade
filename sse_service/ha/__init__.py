"""Everything that knows Home Assistant's WebSocket protocol lives in this package."""

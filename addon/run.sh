#!/bin/sh
# The add-on's start script. exec: the bridge takes SIGTERM itself and drains its streams.
# Options come from /data/options.json, Home Assistant from SUPERVISOR_TOKEN (sse_service/addon.py).
exec python3 -m sse_service.addon "$@"

"""Everything that knows Home Assistant's WebSocket protocol lives in this package.

* ``messages.py``: pure builders and parsers of HA frames.
* ``entities.py``: the reducer of HA's compressed ``subscribe_entities`` events. Pure.
* ``connection.py``: one WebSocket connection: auth, ids, pending calls, ping, read loop.
* ``collection.py``: the exposed entities across connections (snapshot, HA starting, history).
* ``client.py``: ``HAClient``, their composition, with the reconnect schedule and the status.
* ``demo/``: the embedded HA server, and the simulated home it runs.
"""

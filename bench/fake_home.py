#!/usr/bin/env python3
"""A fake Home Assistant holding a realistic home, for ``bytes.py`` (loopback only).

``fake_ha.py`` serves ``sensor.bench_<i>`` entities with two attributes: right for measuring
fan-out, wrong for measuring bytes, which depend on what real states carry. This serves a home
of ``--entities`` states shaped like a real installation's (power and energy sensors with
device_class, state_class and unit; lights with their colour attributes; update entities with
release URLs; climate, media players, automations, people...), deterministic for a ``--seed``,
and always these three, which ``bytes.py`` changes:

* ``input_number.battery`` (the attributes real HA 2026.11 gives the one in tests/real_ha.py),
* ``sensor.house_power`` (device_class power, state_class measurement, W),
* ``light.bed_light`` (the attributes of HA's ``demo`` light of that name).

It speaks ``fake_ha.py``'s protocol (its ``FakeHA``, reused) as HA 2026.11: ``get_states`` with
``last_reported``, ``subscribe_entities`` honouring ``include.entity_globs`` and ``entity_ids``,
whose changes are HA's own compressed diffs (a port of ``_state_diff_event`` from HA's
websocket_api/messages.py), and ``subscribe_events``. Unlike ``fake_ha.py`` nothing changes by
itself: ``call_service`` applies ``input_number.set_value``, ``light.turn_on`` and
``light.turn_off``, and ``bench/set_state`` (``entity_id``, ``state``, ``attributes``) writes a
state as HA's ``POST /api/states/<entity_id>`` does. Both answer with the change's context, made
by a user as a REST call or a click in HA's UI would be.

Bounded: exits after ``--max-seconds``. SIGTERM or SIGINT ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import ipaddress
import random
import signal
import time
from datetime import UTC, datetime
from typing import Any

import fake_ha  # bench/ is on sys.path: this file runs as a script
from fake_ha import Conn, FakeHA, dumps, ulid_like
from websockets.asyncio.server import serve

HA_VERSION = "2026.11.0"
USER_ID = "5c8a7d2e0f1b4a6c9e3d7f0a1b2c3d4e"  # who makes every change here (a token's user)
# What subscribe_entities' results carry besides states (HA's COMPRESSED_STATE_* keys).
STATE, ATTRS, CONTEXT, CHANGED, UPDATED = "s", "a", "c", "lc", "lu"

ROOMS = (
    "Living Room", "Kitchen", "Bedroom", "Office", "Hallway", "Bathroom", "Garage", "Garden",
    "Kids Room", "Guest Room", "Basement", "Attic", "Dining Room", "Laundry", "Porch", "Study",
)  # fmt: skip

# The three entities bytes.py changes, as HA 2026.11 has them before the first change.
INPUT_NUMBER = "input_number.battery"
POWER_SENSOR = "sensor.house_power"
LIGHT = "light.bed_light"
BED_LIGHT_OFF: dict[str, Any] = {
    "min_color_temp_kelvin": 2000, "max_color_temp_kelvin": 6535, "effect_list": ["rainbow", "off"],
    "supported_color_modes": ["color_temp", "hs"], "effect": None, "color_mode": None, "brightness": None,
    "color_temp_kelvin": None, "hs_color": None, "rgb_color": None, "xy_color": None,
    "friendly_name": "Bed Light", "supported_features": 4,
}  # fmt: skip
# What HA 2026.11's demo bed light shows once turned on with a brightness.
BED_LIGHT_ON: dict[str, Any] = {
    **BED_LIGHT_OFF, "effect": "rainbow", "color_mode": "color_temp", "brightness": 180,
    "color_temp_kelvin": 2631, "hs_color": [28.55, 67.974], "rgb_color": [255, 164, 82], "xy_color": [0.532, 0.388],
}  # fmt: skip
FIXED: dict[str, tuple[str, dict[str, Any]]] = {
    INPUT_NUMBER: (
        "50.0",
        {
            "min": 0.0, "max": 100.0, "step": 0.5, "mode": "box", "initial": 50.0, "editable": False,
            "unit_of_measurement": "%", "friendly_name": "Battery",
        },
    ),
    POWER_SENSOR: (
        "1210",
        {
            "state_class": "measurement", "unit_of_measurement": "W", "device_class": "power",
            "friendly_name": "House power",
        },
    ),
    LIGHT: ("off", BED_LIGHT_OFF),
}  # fmt: skip


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


# ------------------------------------------------------------------------------ the home --
def _sensor(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    kind = rng.choices(
        ("power", "energy", "temperature", "humidity", "battery", "illuminance", "signal", "voltage", "timestamp"),
        (18, 14, 16, 10, 14, 6, 10, 6, 6),
    )[0]
    name = f"{room} {('Plug', 'Sensor', 'Meter', 'Thermostat', 'Switch')[n % 5]} {n}"
    if kind == "timestamp":
        at = datetime.fromtimestamp(time.time() - rng.uniform(0, 86400 * 30), UTC).replace(microsecond=0).isoformat()
        return f"sensor.{slug(name)}_last_seen", at, {"device_class": "timestamp", "friendly_name": f"{name} Last seen"}
    unit, klass, value = {
        "power": ("W", "measurement", f"{rng.uniform(0, 2500):.1f}"),
        "energy": ("kWh", "total_increasing", f"{rng.uniform(0, 9000):.3f}"),
        "temperature": ("°C", "measurement", f"{rng.uniform(15, 26):.1f}"),
        "humidity": ("%", "measurement", f"{rng.uniform(30, 70):.0f}"),
        "battery": ("%", "measurement", f"{rng.randint(5, 100)}"),
        "illuminance": ("lx", "measurement", f"{rng.uniform(0, 800):.0f}"),
        "signal": ("dBm", "measurement", f"{rng.randint(-90, -40)}"),
        "voltage": ("V", "measurement", f"{rng.uniform(228, 242):.1f}"),
    }[kind]
    device_class = "signal_strength" if kind == "signal" else kind
    attributes = {
        "state_class": klass, "unit_of_measurement": unit, "device_class": device_class,
        "friendly_name": f"{name} {kind.capitalize()}",
    }  # fmt: skip
    return f"sensor.{slug(name)}_{kind}", value, attributes


def _binary_sensor(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    kind = rng.choice(("motion", "door", "window", "occupancy", "moisture", "connectivity", "problem"))
    name = f"{room} {kind.capitalize()} {n}"
    return (
        f"binary_sensor.{slug(name)}",
        rng.choice(("on", "off", "off")),
        {"device_class": kind, "friendly_name": name},
    )


def _light(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} {('Ceiling', 'Lamp', 'Strip', 'Spots')[n % 4]} {n}"
    modes = rng.choice((["color_temp", "hs"], ["color_temp", "xy"], ["brightness"], ["rgbww"], ["onoff"]))
    attributes: dict[str, Any] = {}
    if "color_temp" in modes or "rgbww" in modes:
        attributes |= {
            "min_color_temp_kelvin": 2202,
            "max_color_temp_kelvin": 6535,
            "min_mireds": 153,
            "max_mireds": 454,
        }
    if rng.random() < 0.3:
        attributes["effect_list"] = ["None", "candle", "fire", "prism", "sparkle", "opal", "glisten"]
    attributes["supported_color_modes"] = modes
    on = rng.random() < 0.4
    if on:
        attributes["color_mode"] = modes[0] if modes[0] != "onoff" else "onoff"
        if modes != ["onoff"]:
            attributes["brightness"] = rng.randint(3, 255)
        if modes[0] in ("color_temp", "rgbww") or modes == ["color_temp", "xy"]:
            k = rng.randint(2202, 6535)
            attributes |= {
                "color_temp_kelvin": k, "color_temp": round(1e6 / k),
                "hs_color": [round(rng.uniform(20, 40), 3), round(rng.uniform(20, 70), 3)],
                "rgb_color": [255, rng.randint(140, 230), rng.randint(60, 200)],
                "xy_color": [round(rng.uniform(0.35, 0.52), 3), round(rng.uniform(0.35, 0.42), 3)],
            }  # fmt: skip
        if "effect_list" in attributes:
            attributes["effect"] = "None"
    else:
        for key in ("color_mode", "brightness", "color_temp_kelvin", "color_temp", "hs_color", "rgb_color", "xy_color"):
            if key in ("color_mode", "brightness") or modes != ["onoff"]:
                attributes[key] = None
        if "effect_list" in attributes:
            attributes["effect"] = None
    attributes |= {"friendly_name": name, "supported_features": 44 if "effect_list" in attributes else 40}
    return f"light.{slug(name)}", "on" if on else "off", attributes


def _switch(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} {('Plug', 'Socket', 'Heater', 'Fan', 'Child Lock')[n % 5]} {n}"
    attributes: dict[str, Any] = {"friendly_name": name}
    if n % 3 == 0:
        attributes = {"device_class": "outlet", **attributes}
    return f"switch.{slug(name)}", rng.choice(("on", "off")), attributes


def _automation(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} {('Lights on motion', 'Night mode', 'Away', 'Morning', 'Notify door open')[n % 5]} {n}"
    last = iso(time.time() - rng.uniform(0, 86400 * 7))
    attributes = {
        "id": str(1700000000000 + rng.randint(0, 10**11)), "last_triggered": last, "mode": "single",
        "current": 0, "friendly_name": name,
    }  # fmt: skip
    return f"automation.{slug(name)}", "on", attributes


def _script(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Scene {n}"
    attributes = {"last_triggered": iso(time.time() - rng.uniform(0, 86400 * 30)), "mode": "single", "current": 0}
    return f"script.{slug(name)}", "off", {**attributes, "friendly_name": name}


def _device_tracker(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"Device {n:03d}"
    mac = ":".join(f"{rng.randint(0, 255):02X}" for _ in range(6))
    attributes = {
        "source_type": "router", "ip": f"192.168.1.{rng.randint(2, 254)}", "mac": mac,
        "host_name": f"device-{n:03d}", "friendly_name": name,
    }  # fmt: skip
    return f"device_tracker.{slug(name)}", rng.choice(("home", "not_home")), attributes


def _person(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = ("Alex", "Sam", "Robin", "Charlie", "Jo", "Max")[n % 6]
    attributes = {
        "editable": True, "id": slug(name), "device_trackers": [f"device_tracker.{slug(name)}_phone"],
        "latitude": round(rng.uniform(48.1, 48.2), 7), "longitude": round(rng.uniform(11.5, 11.6), 7),
        "gps_accuracy": rng.randint(5, 40), "source": f"device_tracker.{slug(name)}_phone",
        "user_id": ulid_like().lower()[:32], "entity_picture": f"/api/image/serve/{ulid_like().lower()}/512x512",
        "friendly_name": name,
    }  # fmt: skip
    return f"person.{slug(name)}_{n}", rng.choice(("home", "not_home")), attributes


def _climate(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Thermostat {n}"
    attributes = {
        "hvac_modes": ["off", "heat", "auto"], "min_temp": 5.0, "max_temp": 30.0, "target_temp_step": 0.5,
        "preset_modes": ["none", "away", "eco", "boost", "comfort"],
        "current_temperature": round(rng.uniform(17, 23), 1), "temperature": 21.0, "hvac_action": "idle",
        "preset_mode": "none", "friendly_name": name, "supported_features": 401,
    }  # fmt: skip
    return f"climate.{slug(name)}", "heat", attributes


def _cover(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Blind {n}"
    position = rng.choice((0, 100, rng.randint(1, 99)))
    attributes = {
        "current_position": position,
        "device_class": "shutter",
        "friendly_name": name,
        "supported_features": 15,
    }
    return f"cover.{slug(name)}", "closed" if position == 0 else "open", attributes


def _media_player(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Speaker {n}"
    if rng.random() < 0.7:
        return (
            f"media_player.{slug(name)}",
            "off",
            {"device_class": "speaker", "friendly_name": name, "supported_features": 4127295},
        )
    attributes = {
        "source_list": ["Line-in", "TV", "Radio", "Spotify"], "group_members": [f"media_player.{slug(name)}"],
        "volume_level": round(rng.random(), 2), "is_volume_muted": False,
        "media_content_id": "x-sonos-spotify:spotify%3atrack%3a4uLU6hMCjMI75M1A2tKUQC",
        "media_content_type": "music", "media_duration": 212, "media_position": rng.randint(0, 212),
        "media_position_updated_at": iso(time.time()), "media_title": "Never Gonna Give You Up",
        "media_artist": "Rick Astley", "media_album_name": "Whenever You Need Somebody", "shuffle": False,
        "repeat": "off", "queue_position": 3, "queue_size": 40, "device_class": "speaker",
        "entity_picture": "/api/media_player_proxy/media_player.x?token=0f6e4b1c8a2d&cache=9d3a1c",
        "friendly_name": name, "supported_features": 4127295,
    }  # fmt: skip
    return f"media_player.{slug(name)}", "playing", attributes


def _update(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Device {n} Firmware"
    version = f"1.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    attributes = {
        "auto_update": False, "display_precision": 0, "installed_version": version, "in_progress": False,
        "latest_version": version, "release_summary": None,
        "release_url": f"https://github.com/Koenkk/zigbee2mqtt/releases/tag/{version}", "skipped_version": None,
        "title": None, "update_percentage": None,
        "entity_picture": "https://brands.home-assistant.io/_/mqtt/icon.png", "friendly_name": name,
        "supported_features": 23,
    }  # fmt: skip
    return f"update.{slug(name)}", "off", attributes


def _number(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Sensor {n} Sensitivity"
    attributes = {"min": 0, "max": 100, "step": 1, "mode": "auto", "unit_of_measurement": "%", "friendly_name": name}
    return f"number.{slug(name)}", str(rng.randint(0, 100)), attributes


def _select(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Plug {n} Power-on behaviour"
    return f"select.{slug(name)}", "previous", {"options": ["off", "on", "toggle", "previous"], "friendly_name": name}


def _button(rng: random.Random, room: str, n: int) -> tuple[str, str, dict[str, Any]]:
    name = f"{room} Device {n} Identify"
    return f"button.{slug(name)}", "unknown", {"device_class": "identify", "friendly_name": name}


KINDS = (
    (_sensor, 900), (_binary_sensor, 280), (_light, 120), (_switch, 150), (_automation, 110), (_script, 30),
    (_device_tracker, 60), (_person, 4), (_climate, 10), (_cover, 30), (_media_player, 16), (_update, 120),
    (_number, 45), (_select, 45), (_button, 80),
)  # fmt: skip


def build_home(count: int, seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    """``count`` states (entity id, state, attributes), the three of ``FIXED`` first, the rest in
    the proportions of ``KINDS`` (about 2000 in all)."""
    rng = random.Random(seed)
    out = [(eid, state, dict(attributes)) for eid, (state, attributes) in FIXED.items()][:count]
    total = sum(weight for _, weight in KINDS)
    seen = {eid for eid, _, _ in out}
    for kind, weight in KINDS:
        for n in range(round(weight * max(0, count - len(FIXED)) / total)):
            if len(out) >= count:
                break
            eid, state, attributes = kind(rng, ROOMS[n % len(ROOMS)], n)
            if eid not in seen:
                seen.add(eid)
                out.append((eid, state, attributes))
    n = 0
    while len(out) < count:  # rounding: fill up with sensors
        eid, state, attributes = _sensor(rng, "Extra", 10_000 + n)
        n += 1
        if eid not in seen:
            seen.add(eid)
            out.append((eid, state, attributes))
    return out


# ------------------------------------------------------------------- states, as HA keeps them --
class Home:
    """Every state as HA's state machine holds it: ISO text for REST and ``get_states``, float
    seconds for the compressed stream."""

    def __init__(self, count: int, seed: int) -> None:
        rng = random.Random(seed + 1)
        now = time.time()
        self.states: dict[str, dict[str, Any]] = {}
        self.times: dict[str, tuple[float, float, float]] = {}  # last_changed, last_updated, last_reported
        for eid, state, attributes in build_home(count, seed):
            changed = now - rng.uniform(60, 86400)
            updated = changed if rng.random() < 0.8 else rng.uniform(changed, now)
            reported = updated if not eid.startswith("sensor.") else rng.uniform(updated, now)
            context = {"id": ulid_like(int(changed * 1e9)), "parent_id": None, "user_id": None}
            self._put(eid, state, attributes, (changed, updated, reported), context)

    def _put(
        self,
        eid: str,
        state: str,
        attributes: dict[str, Any],
        times: tuple[float, float, float],
        context: dict[str, Any],
    ) -> None:
        changed, updated, reported = times
        self.states[eid] = {
            "entity_id": eid, "state": state, "attributes": attributes, "last_changed": iso(changed),
            "last_reported": iso(reported), "last_updated": iso(updated), "context": context,
        }  # fmt: skip
        self.times[eid] = times

    def compressed(self, eid: str) -> dict[str, Any]:
        """HA's ``State.as_compressed_state``."""
        st = self.states[eid]
        changed, updated, _ = self.times[eid]
        ctx = st["context"]
        out = {
            STATE: st["state"],
            ATTRS: st["attributes"],
            CONTEXT: ctx["id"] if ctx["parent_id"] is None and ctx["user_id"] is None else ctx,
            CHANGED: changed,
        }
        if updated != changed:
            out[UPDATED] = updated
        return out

    def write(self, eid: str, state: str, attributes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """HA's ``async_set``: the (state_changed event, subscribe_entities event) of the change,
        None when nothing but last_reported moved (HA streams no such write)."""
        now = time.time()
        old = self.states.get(eid)
        if old is not None and old["state"] == state and old["attributes"] == attributes:
            changed, updated, _ = self.times[eid]
            self.times[eid] = (changed, updated, now)
            old["last_reported"] = iso(now)
            return None
        context = {"id": ulid_like(int(now * 1e9)), "parent_id": None, "user_id": USER_ID}
        changed = self.times[eid][0] if old is not None and old["state"] == state else now
        self._put(eid, state, dict(attributes), (changed, now, now), context)
        new = self.states[eid]
        event = {
            "event_type": "state_changed",
            "data": {"entity_id": eid, "old_state": old, "new_state": new},
            "origin": "LOCAL",
            "time_fired": iso(now),
            "context": context,
        }
        if old is None:
            return event, {"a": {eid: self.compressed(eid)}}
        return event, {"c": {eid: state_diff(old, new, self.times[eid])}}


def state_diff(old: dict[str, Any], new: dict[str, Any], times: tuple[float, float, float]) -> dict[str, Any]:
    """HA 2026.11's ``_state_diff_event`` for one change (websocket_api/messages.py)."""
    additions: dict[str, Any] = {}
    diff: dict[str, Any] = {"+": additions}
    if old["state"] != new["state"]:
        additions[STATE] = new["state"]
    if old["last_changed"] != new["last_changed"]:
        additions[CHANGED] = times[0]
    elif old["last_updated"] != new["last_updated"]:
        additions[UPDATED] = times[1]
    old_ctx, new_ctx = old["context"], new["context"]
    if old_ctx["parent_id"] != new_ctx["parent_id"]:
        additions[CONTEXT] = {"parent_id": new_ctx["parent_id"]}
    if old_ctx["user_id"] != new_ctx["user_id"]:
        if CONTEXT in additions:
            additions[CONTEXT]["user_id"] = new_ctx["user_id"]
        else:
            additions[CONTEXT] = {"user_id": new_ctx["user_id"]}
    if old_ctx["id"] != new_ctx["id"]:
        if CONTEXT in additions:
            additions[CONTEXT]["id"] = new_ctx["id"]
        else:
            additions[CONTEXT] = new_ctx["id"]
    old_attrs, new_attrs = old["attributes"], new["attributes"]
    if old_attrs != new_attrs:
        if added := {k: v for k, v in new_attrs.items() if k not in old_attrs or old_attrs[k] != v}:
            additions[ATTRS] = added
        if removed := old_attrs.keys() - new_attrs:
            diff["-"] = {ATTRS: list(removed)}
    return diff


# --------------------------------------------------------------------------- the server --
class FakeHome(FakeHA):
    """``fake_ha.FakeHA`` with the home's states, HA 2026.11's filters and changes made by commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(argparse.Namespace(**{**vars(args), "entities": 1, "pad": 0, "rate": 0}))
        self.home = Home(args.entities, args.seed)
        self.filters: dict[tuple[Conn, int], tuple[set[str] | None, list[str] | None]] = {}

    def command(self, c: Conn, m: Any, last_id: int) -> int:
        mid = m.get("id") if isinstance(m, dict) else None
        typ = m.get("type") if isinstance(m, dict) else None
        if not isinstance(mid, int) or isinstance(mid, bool) or mid <= last_id:
            return super().command(c, m, last_id)  # its errors
        if typ == "get_states":
            c.send(dumps({"id": mid, "type": "result", "success": True, "result": list(self.home.states.values())}))
        elif typ == "subscribe_entities":
            ids = m.get("entity_ids")
            include = m.get("include")
            globs = include.get("entity_globs") if isinstance(include, dict) else None
            flt = (set(ids) if ids else None, list(globs) if globs else None)
            c.ent_subs[mid] = None
            self.filters[(c, mid)] = flt
            c.send(dumps({"id": mid, "type": "result", "success": True, "result": None}))
            snap = {eid: self.home.compressed(eid) for eid in self.home.states if _wanted(eid, flt)}
            c.send(dumps({"type": "event", "event": {"a": snap}, "id": mid}))
        elif typ in ("call_service", "bench/set_state"):
            self._change(c, mid, m)
        else:
            return super().command(c, m, last_id)
        return mid

    def _change(self, c: Conn, mid: int, m: dict[str, Any]) -> None:
        def fail(code: str, message: str) -> None:
            error = {"code": code, "message": message}
            c.send(dumps({"id": mid, "type": "result", "success": False, "error": error}))

        if m["type"] == "bench/set_state":
            eid, state, attributes = m.get("entity_id"), m.get("state"), m.get("attributes") or {}
            if not isinstance(eid, str) or not isinstance(state, str) or not isinstance(attributes, dict):
                return fail("invalid_format", "entity_id, state (strings) and attributes (an object)")
        else:
            service = f"{m.get('domain')}.{m.get('service')}"
            data = {**(m.get("service_data") or {}), **(m.get("target") or {})}
            eid = data.get("entity_id")
            old = self.home.states.get(eid) if isinstance(eid, str) else None
            if old is None or not isinstance(eid, str):
                return fail("not_found", f"no entity {eid}")
            if service == "input_number.set_value" and eid.startswith("input_number."):
                state, attributes = str(float(data["value"])), old["attributes"]
            elif service == "light.turn_on" and eid.startswith("light."):
                base = old["attributes"] if old["state"] == "on" else BED_LIGHT_ON
                state, attributes = "on", {**base, "brightness": int(data.get("brightness", base["brightness"]))}
            elif service == "light.turn_off" and eid.startswith("light."):
                state, attributes = "off", BED_LIGHT_OFF
            else:
                return fail("not_found", f"Service {service} not found.")
        change = self.home.write(eid, state, attributes)
        context = self.home.states[eid]["context"]
        if change is not None:
            event, entities = change
            for conn in list(self.conns):
                for sid in conn.subs:
                    conn.send(dumps({"id": sid, "type": "event", "event": event}))
                for sid in conn.ent_subs:
                    if _wanted(eid, self.filters.get((conn, sid), (None, None))):
                        conn.send(dumps({"type": "event", "event": entities, "id": sid}))
        c.send(dumps({"id": mid, "type": "result", "success": True, "result": {"context": context, "response": None}}))


def _wanted(eid: str, flt: tuple[set[str] | None, list[str] | None]) -> bool:
    ids, globs = flt
    if ids is None and globs is None:
        return True
    return (ids is not None and eid in ids) or (globs is not None and any(fnmatch.fnmatchcase(eid, g) for g in globs))


async def amain(args: argparse.Namespace) -> None:
    fake_ha.HA_VERSION = HA_VERSION  # what its auth messages and get_config say
    home = FakeHome(args)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: None if stop.done() else stop.set_result(None))
    # HA's aiohttp accepts permessage-deflate; the bridge offers it, so the fake does as HA.
    async with serve(home.handler, args.host, args.port, compression="deflate", max_size=None, ping_interval=None):
        print(
            f"fake_home listening ws://{args.host}:{args.port}/api/websocket, {len(home.home.states)} entities",
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop, args.max_seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    ap.add_argument("--token", default="bench-token")
    ap.add_argument("--entities", type=int, default=2000, help="states in the home, the three changed ones included")
    ap.add_argument("--seed", type=int, default=27, help="the same seed gives the same home (but for times and ids)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long")
    ap.add_argument("--max-pending", type=int, default=4096)
    args = ap.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        ap.error("--host must be a loopback address")
    if not 3 <= args.entities <= 100_000:
        ap.error("--entities must be in 3..100000")
    # FakeHA reads these; this fake has no use for them.
    args.wait_signal, args.status_file, args.strict_json, args.log_connections = False, None, False, False
    args.max_events, args.compression = 0, "deflate"
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()

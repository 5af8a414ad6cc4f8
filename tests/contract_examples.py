"""The example records of DESIGN §5 and §7, shared by every test that needs a valid one, so a
contract change is made once."""

from __future__ import annotations

from typing import Any

ATTRS = {"category": "dress", "style": "boho", "color": "sage", "size": "M"}
CLICK: dict[str, Any] = {"event_id": "e-1", "type": "view", "ts": 1764000000000, "user_id": "u-1",
                         "session_id": "s-1", "sku": "SKU-1", "region": "CN-GD", "attrs": ATTRS}
ORDER: dict[str, Any] = {"event_id": "e-2", "type": "placed", "ts": 1764000000500, "order_id": "o-1",
                         "user_id": "u-1", "sku": "SKU-1", "quantity": 2, "unit_price": 19.9, "region": "CN-GD",
                         "group_id": "g-7", "group_target": 50, "group_expires_ts": 1764086400000}
CATALOG: dict[str, Any] = {"sku": "SKU-1", "attrs": ATTRS, "ts": 1764000000000}
STATUS: dict[str, Any] = {"factory_id": "f-1", "trigger_id": "t-1", "revision": 2, "status": "accepted",
                          "units": 300, "ts": 1764000100000}
CAPACITY: dict[str, Any] = {"factory_id": "f-1", "status": "capacity", "capacity_units_per_day": 4000,
                            "ts": 1764000100000}
TRIGGER: dict[str, Any] = {
    "trigger_id": "t-1", "revision": 1, "action": "start", "kind": "forecast", "factory_id": "f-1",
    "niche": {"category": "dress", "style": "boho", "color": "sage", "size": "M", "region": "CN-GD"},
    "units": 200, "due_by_ts": 1764259200000, "emitted_ts": 1764000001000,
    "forecast": {"horizon_hours": 72, "p50": 180, "p90": 240, "model": "rule-v1", "cold_start": False},
    "evidence": {"views": 5400, "add_to_cart": 610, "orders": 95, "drift": False},
    "reason": "p90 demand over lead time exceeds open production by 240 units",
}

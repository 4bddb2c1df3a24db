"""What hangs off a person or stands beside people: devices, suppressions, objects,
relationships, and calls kept as they came."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cio_anon import jsonio
from cio_anon.clock import from_unix
from cio_anon.models import (
    Device,
    Relationship,
)
from cio_anon.store.base import Store, moment_of, seconds_of


class ThingTables(Store):
    """The devices, suppressions, objects, relationships and other_calls tables."""

    # -- devices, suppressions, objects, relationships, other calls --------------------

    def save_device(self, cio_id: str, device: Device) -> None:
        self.conn.execute(
            "INSERT INTO devices (cio_id, device_id, platform, attributes, last_used, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cio_id, device_id) DO UPDATE "
            "SET platform = coalesce(excluded.platform, platform), "
            "attributes = excluded.attributes, last_used = coalesce(excluded.last_used, "
            "last_used), updated_at = excluded.updated_at",
            (
                cio_id,
                device.device_id,
                device.platform,
                jsonio.dumps(device.attributes),
                seconds_of(device.last_used),
                device.updated_at.timestamp(),
            ),
        )

    def delete_device(self, cio_id: str, device_id: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM devices WHERE cio_id = ? AND device_id = ?", (cio_id, device_id)
        )
        return cursor.rowcount == 1

    def devices_of(self, cio_id: str) -> list[Device]:
        rows = self.conn.execute(
            "SELECT device_id, platform, attributes, last_used, updated_at FROM devices "
            "WHERE cio_id = ? ORDER BY updated_at DESC, device_id",
            (cio_id,),
        ).fetchall()
        return [
            Device(
                row["device_id"],
                row["platform"],
                jsonio.loads(row["attributes"]),
                moment_of(row["last_used"]),
                from_unix(row["updated_at"]),
            )
            for row in rows
        ]

    def device_attributes(self, cio_id: str, device_id: str) -> dict[str, Any] | None:
        value = self._scalar(
            "SELECT attributes FROM devices WHERE cio_id = ? AND device_id = ?",
            (cio_id, device_id),
        )
        return None if value is None else dict(jsonio.loads(value))

    def suppress(self, kind: str, value: str, at: datetime) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO suppressions (kind, value, suppressed_at) VALUES (?, ?, ?)",
            (kind, value, at.timestamp()),
        )

    def unsuppress(self, kind: str, value: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM suppressions WHERE kind = ? AND value = ?", (kind, value)
        )
        return cursor.rowcount > 0

    def any_suppressed(self) -> bool:
        return bool(self._scalar("SELECT EXISTS (SELECT 1 FROM suppressions)"))

    def is_suppressed(self, kind: str, value: str) -> bool:
        return bool(
            self._scalar("SELECT 1 FROM suppressions WHERE kind = ? AND value = ?", (kind, value))
        )

    def get_object(self, type_id: str, object_id: str) -> dict[str, Any] | None:
        value = self._scalar(
            "SELECT attributes FROM objects WHERE object_type_id = ? AND object_id = ?",
            (type_id, object_id),
        )
        return None if value is None else dict(jsonio.loads(value))

    def save_object(
        self, type_id: str, object_id: str, attributes: dict[str, Any], now: datetime
    ) -> None:
        self.conn.execute(
            "INSERT INTO objects (object_type_id, object_id, attributes, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (object_type_id, object_id) "
            "DO UPDATE SET attributes = excluded.attributes, updated_at = excluded.updated_at",
            (type_id, object_id, jsonio.dumps(attributes), now.timestamp(), now.timestamp()),
        )

    def delete_object(self, type_id: str, object_id: str) -> list[str]:
        """Remove an object and its relationships; the cio_ids it was related to."""
        related = [
            row[0]
            for row in self.conn.execute(
                "DELETE FROM relationships WHERE object_type_id = ? AND object_id = ? "
                "RETURNING cio_id",
                (type_id, object_id),
            )
        ]
        self.conn.execute(
            "DELETE FROM objects WHERE object_type_id = ? AND object_id = ?", (type_id, object_id)
        )
        return related

    def relate(
        self,
        cio_id: str,
        type_id: str,
        object_id: str,
        attributes: dict[str, Any],
        now: datetime,
    ) -> None:
        self.conn.execute(
            "INSERT INTO relationships (cio_id, object_type_id, object_id, attributes, "
            "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (cio_id, object_type_id, object_id) "
            "DO UPDATE SET attributes = excluded.attributes",
            (cio_id, type_id, object_id, jsonio.dumps(attributes), now.timestamp()),
        )

    def unrelate(self, cio_id: str, type_id: str, object_id: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM relationships WHERE cio_id = ? AND object_type_id = ? AND object_id = ?",
            (cio_id, type_id, object_id),
        )
        return cursor.rowcount == 1

    def relationships_of(self, cio_id: str) -> list[Relationship]:
        rows = self.conn.execute(
            "SELECT r.object_type_id, r.object_id, r.attributes, r.created_at, "
            "o.attributes AS object_attributes FROM relationships r LEFT JOIN objects o "
            "ON o.object_type_id = r.object_type_id AND o.object_id = r.object_id "
            "WHERE r.cio_id = ? ORDER BY r.object_type_id, r.object_id",
            (cio_id,),
        ).fetchall()
        return [
            Relationship(
                row["object_type_id"],
                row["object_id"],
                jsonio.loads(row["attributes"]),
                jsonio.loads(row["object_attributes"] or "{}"),
                from_unix(row["created_at"]),
            )
            for row in rows
        ]

    def add_other_call(
        self, at: datetime, api: str, call: str, method: str, path: str, body: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO other_calls (received_at, api, call, method, path, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at.timestamp(), api, call, method, path, body),
        )

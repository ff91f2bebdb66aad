"""Stored responses (`store: true`): each response object, the conversation it ended (to continue
from with `previous_response_id`) and the caller it belongs to, in SQLite under the state
directory, so a restart loses none. Bounded: past `keep` responses the oldest go. Another caller's
response is not found (404), as if it did not exist."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec

from protocol import ChatMessage

_messages = msgspec.json.Decoder(list[ChatMessage])


class ResponseStore:
    def __init__(self, path: Path, keep: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keep = keep
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: one statement a write
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, caller TEXT NOT NULL,"
            " created REAL NOT NULL, response BLOB NOT NULL, conversation BLOB NOT NULL)"
        )

    def put(self, caller: str, response: dict[str, object], conversation: list[ChatMessage]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (
                response["id"],
                caller,
                time.time(),
                msgspec.json.encode(response),
                msgspec.json.encode(conversation),
            ),
        )
        self._db.execute(
            "DELETE FROM responses WHERE id IN"
            " (SELECT id FROM responses ORDER BY created DESC LIMIT -1 OFFSET ?)",
            (self.keep,),
        )

    def get(self, caller: str, response_id: str) -> tuple[dict[str, object], list[ChatMessage]] | None:
        row = self._db.execute(
            "SELECT response, conversation FROM responses WHERE id = ? AND caller = ?", (response_id, caller)
        ).fetchone()
        if row is None:
            return None
        return msgspec.json.decode(row[0]), _messages.decode(row[1])

    def delete(self, caller: str, response_id: str) -> bool:
        gone = self._db.execute("DELETE FROM responses WHERE id = ? AND caller = ?", (response_id, caller))
        return gone.rowcount > 0

    def close(self) -> None:
        self._db.close()

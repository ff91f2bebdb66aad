"""Files and batches, kept across restarts: metadata in SQLite (the embedded default: no server to
run), file contents as files in the files directory. A batch's lines are rows, each committed as
it is answered, so a restarted gateway resumes a batch where it was and answers each line once."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, owner TEXT NOT NULL, object TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL, line INTEGER NOT NULL, custom_id TEXT NOT NULL, body TEXT NOT NULL,
    status_code INTEGER, answer TEXT, PRIMARY KEY (batch_id, line)
);
"""


def file_object(row: sqlite3.Row) -> dict[str, object]:
    """OpenAI's file object."""
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "status_details": None,
    }


class Store:
    def __init__(self, state_dir: Path, files_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        files_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir = files_dir
        self.db = sqlite3.connect(state_dir / "batches.sqlite3", isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- files ------------------------------------------------------------------------

    def path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    def new_file_id(self) -> str:
        return f"file-{uuid.uuid4().hex}"

    def add_file(self, file_id: str, owner: str, filename: str, purpose: str, size: int) -> dict[str, object]:
        self.db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (file_id, owner, filename, purpose, size, int(time.time())),
        )
        return self.file(file_id, owner)  # type: ignore[return-value]

    def file(self, file_id: str, owner: str) -> dict[str, object] | None:
        """The owner's file; another key's is as good as absent."""
        row = self.db.execute("SELECT * FROM files WHERE id = ? AND owner = ?", (file_id, owner)).fetchone()
        return None if row is None else file_object(row)

    def files(
        self, owner: str, purpose: str | None, limit: int, after: str | None
    ) -> list[dict[str, object]]:
        query = "SELECT * FROM files WHERE owner = ?"
        args: list[object] = [owner]
        if purpose:
            query, args = query + " AND purpose = ?", [*args, purpose]
        if after:
            query += " AND rowid < (SELECT rowid FROM files WHERE id = ?)"
            args.append(after)
        rows = self.db.execute(query + " ORDER BY rowid DESC LIMIT ?", [*args, limit]).fetchall()
        return [file_object(row) for row in rows]

    def delete_file(self, file_id: str, owner: str) -> bool:
        deleted = self.db.execute("DELETE FROM files WHERE id = ? AND owner = ?", (file_id, owner)).rowcount
        if deleted:
            self.path(file_id).unlink(missing_ok=True)
        return bool(deleted)

    def write_file(self, owner: str, filename: str, purpose: str, lines: list[str]) -> str:
        """A file the server writes (a batch's output or errors), one JSON object a line."""
        file_id = self.new_file_id()
        data = "".join(f"{line}\n" for line in lines).encode()
        partial = self.path(file_id).with_suffix(".part")
        partial.write_bytes(data)
        partial.rename(self.path(file_id))
        self.add_file(file_id, owner, filename, purpose, len(data))
        return file_id

    # --- batches ----------------------------------------------------------------------

    def add_batch(self, owner: str, batch: dict[str, object], lines: list[tuple[str, str]]) -> None:
        """The batch and its lines (custom_id, body as JSON), in one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO batches VALUES (?, ?, ?)", (batch["id"], owner, json.dumps(batch)))
            self.db.executemany(
                "INSERT INTO lines (batch_id, line, custom_id, body) VALUES (?, ?, ?, ?)",
                [(batch["id"], n, custom_id, body) for n, (custom_id, body) in enumerate(lines)],
            )

    def put_batch(self, batch: dict[str, object]) -> None:
        self.db.execute("UPDATE batches SET object = ? WHERE id = ?", (json.dumps(batch), batch["id"]))

    def batch(self, batch_id: str, owner: str | None = None) -> dict[str, object] | None:
        query, args = "SELECT object FROM batches WHERE id = ?", [batch_id]
        if owner is not None:
            query, args = query + " AND owner = ?", [*args, owner]
        row = self.db.execute(query, args).fetchone()
        return None if row is None else json.loads(row["object"])

    def owner(self, batch_id: str) -> str:
        return self.db.execute("SELECT owner FROM batches WHERE id = ?", (batch_id,)).fetchone()["owner"]

    def batches(self, owner: str | None, limit: int, after: str | None = None) -> list[dict[str, object]]:
        query, args = "SELECT object FROM batches WHERE 1", []
        if owner is not None:
            query, args = query + " AND owner = ?", [owner]
        if after:
            query += " AND rowid < (SELECT rowid FROM batches WHERE id = ?)"
            args.append(after)
        rows = self.db.execute(query + " ORDER BY rowid DESC LIMIT ?", [*args, limit]).fetchall()
        return [json.loads(row["object"]) for row in rows]

    def pending(self, batch_id: str) -> list[tuple[int, str, str]]:
        """The lines not answered yet: (line, custom_id, body)."""
        rows = self.db.execute(
            "SELECT line, custom_id, body FROM lines "
            "WHERE batch_id = ? AND status_code IS NULL ORDER BY line",
            (batch_id,),
        ).fetchall()
        return [(row["line"], row["custom_id"], row["body"]) for row in rows]

    def answer(self, batch_id: str, line: int, status_code: int, answer: dict[str, object]) -> None:
        """One line's answer, committed at once: after a restart it is not run again."""
        self.db.execute(
            "UPDATE lines SET status_code = ?, answer = ? WHERE batch_id = ? AND line = ?",
            (status_code, json.dumps(answer), batch_id, line),
        )

    def answers(self, batch_id: str) -> list[tuple[int, str]]:
        """(status_code, answer line) of every answered line, in the input's order."""
        rows = self.db.execute(
            "SELECT status_code, answer FROM lines "
            "WHERE batch_id = ? AND status_code IS NOT NULL ORDER BY line",
            (batch_id,),
        ).fetchall()
        return [(row["status_code"], row["answer"]) for row in rows]

    def line_count(self, batch_id: str) -> int:
        return int(
            self.db.execute("SELECT COUNT(*) FROM lines WHERE batch_id = ?", (batch_id,)).fetchone()[0]
        )

    def queued_lines(self, owner: str) -> int:
        """Lines of the owner's batches not answered yet (the per-key quota)."""
        row = self.db.execute(
            "SELECT COUNT(*) AS n FROM lines JOIN batches ON batches.id = lines.batch_id "
            "WHERE batches.owner = ? AND lines.status_code IS NULL",
            (owner,),
        ).fetchone()
        return int(row["n"])

    def drop_pending(self, batch_id: str) -> None:
        """A batch that ends early (cancelled, expired) keeps only its answered lines."""
        self.db.execute("DELETE FROM lines WHERE batch_id = ? AND status_code IS NULL", (batch_id,))

"""What a backup is on disk: its files, its manifest (the proof of the copy) and the errors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DUMP_FILE = "atlilith.dump"
MANIFEST_FILE = "manifest.json"
# In the default backup folder: backups written elsewhere (`backup --out DIR`), so that
# `restore latest` finds them too.
INDEX_FILE = "index.json"
MANIFEST_FORMAT = 1


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why and what to do."""


class RestoreRefused(BackupError):
    """The restore would overwrite data (or cross a version it must not) and was not forced."""


@dataclass
class TableStat:
    rows: int
    md5: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    format: int
    created_at: str
    atlilith_version: str
    database: str
    server_version: str
    server_major: int
    pg_dump: dict[str, str]
    owner_role: str
    app_role: str
    schemas: list[str]
    alembic_revisions: list[str]
    tables: dict[str, TableStat]
    dump: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["tables"] = {k: TableStat(**v) for k, v in raw["tables"].items()}
            manifest = cls(**raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{path} is not a readable backup manifest: {exc}") from exc
        if manifest.format != MANIFEST_FORMAT:
            raise BackupError(f"{path}: manifest format {manifest.format} is not supported")
        return manifest

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    pruned: list[Path] = field(default_factory=list)

"""The folder channel's settings: ``[[inbox]]`` folders files are dropped into."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from gateway.channels.sections import ID_PATTERN, StrictModel


class InboxSettings(StrictModel):
    path: Path
    partner: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    processed: Path | None = None
    failed: Path | None = None
    poll_interval: float = Field(default=0.2, gt=0, le=3600)
    ignore: list[str] = Field(default_factory=lambda: [
        ".*", "~*", "*.tmp", "*.part", "*.partial", "*.filepart", "*.crdownload", "*.swp"])
    max_size: int = Field(default=200 * 1024 * 1024, gt=0)

    @property
    def processed_dir(self) -> Path:
        return self.processed or self.path.parent / "processed"

    @property
    def failed_dir(self) -> Path:
        return self.failed or self.path.parent / "failed"


class FolderSection(StrictModel):
    """The keys of ``gateway.toml`` this channel owns."""

    #: Inbox folders watched for files (``[[inbox]]``).
    inbox: list[InboxSettings] = Field(
        default_factory=lambda: [InboxSettings(path=Path("var/inbox"))])

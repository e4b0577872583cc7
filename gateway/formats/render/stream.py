"""Rendering a document too large to hold (issue 16): a 100 MB price list.

The intake hands a renderer that can stream (``StreamingMapping``) the document with its
long list as a ``StreamedList``: a list whose items are read from a spool file each time
it is walked, never held together. The renderer writes the body to a spool file and checks
it as it reads it back; its ``StreamedBody`` is sealed with the control reference straight
into the archive (``seal_to``), block by block. Memory stays at one item and one block of
text, whatever the number of items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from gateway.formats.render import Body, RenderContext


class StreamedList(list[Any]):
    """A list walked by reading its items again each time (``source()`` gives a fresh
    iterator): the renderer's loops see a list, memory holds one item at a time.

    It is as long as ``count`` and equal to ``[]`` only when empty (what the renderer's
    ``when`` and ``count`` ask); indexing it is not supported (a mapping does not do it).
    """

    def __init__(self, source: Callable[[], Iterator[Any]], count: int) -> None:
        super().__init__()
        self._source = source
        self._count = count

    def __iter__(self) -> Iterator[Any]:
        return self._source()

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StreamedList):
            return other is self
        return isinstance(other, list) and not other and self._count == 0

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return f"StreamedList({self._count} items)"


@runtime_checkable
class StreamedBody(Body, Protocol):
    """A validated rendering held in a spool file, sealed without being held in memory."""

    #: bytes of the spooled body (without the envelope the seal adds)
    size: int

    def seal_to(self, control_ref: str, write: Callable[[bytes], object]) -> int:
        """Write the sealed bytes block by block with ``write``; returns how many. Must not
        fail but for ``write``'s own errors."""
        ...

    def discard(self) -> None:
        """Remove the spool file (after the sealed bytes were archived, or on failure)."""
        ...


@runtime_checkable
class StreamingMapping(Protocol):
    """An outbound mapping that can render a document holding a ``StreamedList``."""

    def render_stream(self, document: dict[str, Any], ctx: RenderContext, *,
                      spool: Path | None = None) -> StreamedBody:
        """``render``, the body written to a file under ``spool`` (the system's temporary
        folder when None); RenderError when it cannot be (nothing is left behind)."""
        ...

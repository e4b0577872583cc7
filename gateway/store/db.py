"""The store: transmissions, their timeline, documents and the outbox (SQLAlchemy Core).

SQLite (a file under ``var/`` by default) and PostgreSQL run the same code. Every method
is one transaction; a method that returns has committed.

``Store`` is the composition of the repositories that own each aggregate's SQL
(``transmissions``, ``documents``, ``held``, ``outbox``, ``outbound``, ``pricelists``,
``instances``), sharing one engine
(``engine``). The names other modules import from here are re-exported.
"""

from __future__ import annotations

from gateway.core.ids import new_id
from gateway.core.records import NewDocument
from gateway.store.documents import DocumentRepository
from gateway.store.documents import document_row as _document_row
from gateway.store.engine import (
    StoreEngine,
    create_engine,
    default_sqlite_url,
    is_outage,
    utcnow,
)
from gateway.store.held import HeldRepository
from gateway.store.instances import InstanceRepository
from gateway.store.outbound import OutboundRepository
from gateway.store.outbox import OutboxRepository
from gateway.store.pricelists import PriceListRepository
from gateway.store.records import LogFilter, OutboxItem, TransmissionRow
from gateway.store.settlement import resettle
from gateway.store.transmissions import TransmissionRepository

__all__ = ["LogFilter", "NewDocument", "OutboxItem", "Store", "TransmissionRow", "_document_row",
           "create_engine", "default_sqlite_url", "is_outage", "new_id", "resettle", "utcnow"]


class Store(TransmissionRepository, DocumentRepository, HeldRepository, OutboxRepository,
            OutboundRepository, PriceListRepository, InstanceRepository, StoreEngine):
    """Transactional access to the gateway's records."""

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True) -> Store:
        """Open the store at ``url`` (creating a SQLite file's folder) and migrate it."""
        engine = create_engine(url)
        store = cls(engine)
        if migrate:
            from gateway.store.migrate import upgrade

            upgrade(engine)
        return store

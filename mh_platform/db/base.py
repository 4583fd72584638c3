"""Declarative base, naming convention and column types shared by every table."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    Refuses naive datetimes on write; returns aware UTC datetimes on read (SQLite stores none).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Envelope(TypeDecorator[bytes]):
    """Bytes of an encryption envelope. Stores bytes only; never decrypts (that is disclosure's job)."""

    impl = sa.LargeBinary
    cache_ok = True


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        uuid.UUID: sa.Uuid(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
        bytes: sa.LargeBinary(),
    }


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


def time_ordered_uuid() -> uuid.UUID:
    """A UUIDv7-layout id (RFC 9562): 48-bit Unix time in ms, version 7, 74 random bits.

    For tables that take many inserts (``response``): fresh ids land at the right edge of the
    primary-key b-tree, next to each other, instead of on random pages all over it. The id shows
    when the row was created (to the ms); it is no secret and grants nothing (tokens, codes and
    keys use their own secrets)."""
    r = int.from_bytes(os.urandom(10), "big")
    ms = time.time_ns() // 1_000_000
    hi = ((ms & 0xFFFF_FFFF_FFFF) << 16) | 0x7000 | (r >> 62 & 0x0FFF)
    lo = (0b10 << 62) | (r & ((1 << 62) - 1))
    return uuid.UUID(int=(hi << 64) | lo)


def time_ordered_ids(n: int) -> list[bytes]:
    """``n`` fresh ids in ``time_ordered_uuid``'s layout (UUIDv7: this millisecond, then
    random bits from one ``os.urandom`` call) as 16 bytes each, sorted: written in this order they
    extend the primary-key b-tree at its right edge, after every id made before."""
    import numpy  # bulk paths only; kept out of the models' import

    a = numpy.frombuffer(os.urandom(16 * n), dtype=numpy.uint8).reshape(n, 16).copy()
    ms = time.time_ns() // 1_000_000
    a[:, :6] = numpy.frombuffer((ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big"), dtype=numpy.uint8)
    a[:, 6] = (a[:, 6] & 0x0F) | 0x70
    a[:, 8] = (a[:, 8] & 0x3F) | 0x80
    raw = a.tobytes()
    return sorted([raw[i:i + 16] for i in range(0, 16 * n, 16)])


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(sa.Uuid(), primary_key=True, default=new_uuid)


def path_type() -> sa.types.TypeEngine[str]:
    """Materialised org paths compare bytewise (C collation on PostgreSQL) so range scans are exact."""
    return sa.String(400).with_variant(sa.String(400, collation="C"), "postgresql")

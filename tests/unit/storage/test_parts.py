"""A multipart part as read (in pieces, checksummed as they arrive) and as sent."""

from __future__ import annotations

import io
import os
import zlib

import pytest

from ecr_backup.cancellation import CANCELLATION, Cancelled
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.streams import VerifyingReader
from ecr_backup.settings import HASH_PIECE_SIZE
from ecr_backup.storage.blobstore import _Part, _PartBody


class Trickle(io.BytesIO):
    """An HTTP body: short reads of odd sizes."""

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(min(size if size is not None and size >= 0 else 1 << 30, 70_001))


def part_of(data: bytes, size: int) -> tuple[_Part, VerifyingReader]:
    reader = VerifyingReader(Trickle(data), Digest.of(data), len(data))
    return _Part.read(reader, size), reader


def drain(body: _PartBody, block: int) -> bytes:
    out = bytearray()
    while chunk := body.read(block):
        out += chunk
    return bytes(out)


def test_a_part_holds_exactly_its_bytes_with_their_crc32() -> None:
    data = os.urandom(3 * HASH_PIECE_SIZE + 12_345)
    size = 2 * HASH_PIECE_SIZE + 1
    first, reader = part_of(data, size)
    second = _Part.read(reader, size)
    third = _Part.read(reader, size)
    reader.verify()  # every byte went through the hash once
    assert (first.size, second.size, third.size) == (size, len(data) - size, 0)
    assert b"".join(first.pieces) == data[:size]
    assert b"".join(second.pieces) == data[size:]
    assert first.crc32 == zlib.crc32(data[:size])
    assert second.crc32 == zlib.crc32(data[size:])
    assert max(len(p) for p in first.pieces) <= HASH_PIECE_SIZE


@pytest.mark.parametrize("block", [4099, 8192, 131_072, HASH_PIECE_SIZE + 7, -1])
def test_the_body_sends_the_bytes_in_order_whatever_the_block(block: int) -> None:
    data = os.urandom(HASH_PIECE_SIZE + 99_999)
    part, _ = part_of(data, len(data))
    body = part.body()
    assert len(body) == len(data)
    assert drain(body, block) == data
    assert body.tell() == len(data)
    assert body.read(block) == b""


def test_a_retry_rewinds_and_sends_the_same_bytes() -> None:
    data = os.urandom(2 * HASH_PIECE_SIZE + 3)
    part, _ = part_of(data, len(data))
    body = part.body()
    body.read(100_000)
    body.read(HASH_PIECE_SIZE)
    assert body.seek(0) == 0  # what botocore does before resending
    assert drain(body, 131_072) == data
    assert body.seek(-5, io.SEEK_END) == len(data) - 5
    assert drain(body, 2) == data[-5:]
    body.seek(HASH_PIECE_SIZE + 10)
    assert body.tell() == HASH_PIECE_SIZE + 10
    assert drain(body, 4096) == data[HASH_PIECE_SIZE + 10 :]


def test_an_interrupt_stops_the_send_mid_part() -> None:
    data = os.urandom(HASH_PIECE_SIZE)
    part, _ = part_of(data, len(data))
    body = part.body()
    body.read(8192)
    CANCELLATION.cancel()
    try:
        with pytest.raises(Cancelled):
            body.read(8192)
    finally:
        CANCELLATION.reset()


def test_readinto_fills_a_callers_buffer() -> None:
    data = os.urandom(HASH_PIECE_SIZE + 5)
    part, _ = part_of(data, len(data))
    body = part.body()
    out = bytearray()
    buffer = bytearray(300_000)
    while n := body.readinto(buffer):
        out += buffer[:n]
    assert bytes(out) == data

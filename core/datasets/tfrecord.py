"""TFRecord framing and `tf.train.Example` encoding without TensorFlow.

Why not tf.io.TFRecordWriter: importing TensorFlow costs seconds and a few hundred MB of
resident memory, which would blow the `dataset add` memory budget and make the CLI slow
to start. The format is small and fixed (see tensorflow/core/lib/io/record_writer.cc and
example.proto), so we write it here and the tests read it back with real TensorFlow.

Record framing: uint64 length (little endian), masked crc32c of the length, the data,
masked crc32c of the data.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Union

import google_crc32c

FeatureValue = Union[bytes, str, int, list[bytes], list[int], list[float], float]

_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    crc: int = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it sits in the file."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc(length)) + record + struct.pack("<I", masked_crc(record))


def read_records(path: str | Path) -> Iterator[bytes]:
    """Yield each record's payload, checking both checksums (a corrupt shard raises ValueError)."""
    with open(path, "rb") as f:
        yield from _read(f, str(path))


def _read(f: BinaryIO, name: str) -> Iterator[bytes]:
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise ValueError(f"{name}: truncated record header")
        (length,) = struct.unpack("<Q", header[:8])
        if struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
            raise ValueError(f"{name}: bad length checksum")
        data = f.read(length)
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise ValueError(f"{name}: truncated record")
        if struct.unpack("<I", footer)[0] != masked_crc(data):
            raise ValueError(f"{name}: bad data checksum")
        yield data


# ---- protobuf wire format, just what Example needs ----------------------------------------

def _varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1          # int64 negatives are ten-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature(value: FeatureValue) -> bytes:
    values: list[Any] = list(value) if isinstance(value, list) else [value]
    if not values or isinstance(values[0], (bytes, str)):
        items = b"".join(_field(1, v.encode("utf-8") if isinstance(v, str) else v) for v in values)
        return _field(1, items)                                   # Feature.bytes_list
    if isinstance(values[0], float):
        packed = struct.pack(f"<{len(values)}f", *values)
        return _field(2, _field(1, packed))                       # Feature.float_list (packed)
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed))                           # Feature.int64_list (packed)


def encode_example(features: dict[str, FeatureValue]) -> bytes:
    """Serialize a tf.train.Example; keys are written sorted so output is deterministic."""
    entries = b""
    for key in sorted(features):
        entry = _field(1, key.encode("utf-8")) + _field(2, _feature(features[key]))
        entries += _field(1, entry)                                # Features.feature map entry
    return _field(1, entries)                                      # Example.features


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _read_varint(buf, pos)
            yield number, wire, buf[pos:pos + n]
            pos += n
        elif wire == 0:
            v, pos = _read_varint(buf, pos)
            yield number, wire, v
        elif wire == 5:
            yield number, wire, buf[pos:pos + 4]
            pos += 4
        elif wire == 1:
            yield number, wire, buf[pos:pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _payload(value: bytes | int) -> bytes:
    """The bytes of a length-delimited field; a varint where one is expected is a corrupt record."""
    if not isinstance(value, bytes):
        raise ValueError("corrupt Example: a varint where a length-delimited field belongs")
    return value


def decode_example(data: bytes) -> dict[str, list[bytes] | list[int] | list[float]]:
    """Parse what `encode_example` (or TensorFlow) wrote: bytes, int64 and float lists."""
    out: dict[str, list[Any]] = {}
    for _, _, features in _fields(data):
        for _, _, entry in _fields(_payload(features)):
            key, value = "", b""
            for num, _, v in _fields(_payload(entry)):
                if num == 1:
                    key = _payload(v).decode("utf-8")
                elif num == 2:
                    value = _payload(v)
            for kind, _, lst in _fields(value):
                vals: list[Any] = []
                for _, wire, item in _fields(_payload(lst)):
                    if kind == 1:
                        vals.append(item)
                    elif kind == 2:
                        raw = _payload(item) if wire == 2 or isinstance(item, bytes) else b""
                        vals += list(struct.unpack(f"<{len(raw) // 4}f", raw))
                    elif kind == 3:
                        if wire == 2:
                            packed, p = _payload(item), 0
                            while p < len(packed):
                                n, p = _read_varint(packed, p)
                                vals.append(n - (1 << 64) if n >= 1 << 63 else n)
                        else:
                            vals.append(item)
                out[key] = vals
    return out

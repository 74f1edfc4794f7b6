"""The .tsth container: a small header around the model's range-coded strings.

Layout (integers big-endian):

    offset  size  field
    0       4     magic b"TSTH"
    4       1     format version (4)
    5       1     L, length of the model id
    6       L     model id, ASCII (e.g. "mean_scale_hyperprior-3f2a9c01d4e7")
    6+L     4     image height (at most 32768)
    10+L    4     image width (at most 32768; at most 2**28 pixels in all)
    14+L    1     channels to decode to (1: grayscale, 3: RGB)
    15+L    2     quality level × 100 (so 1.00 to 655.35 in steps of 0.01)
    17+L    8     checksum of the coded symbols (see export.py and below)
    25+L    2     T, the side of a coding tile in latents (0: one piece)
    27+L    4     CRC-32 of all bytes before it and of the payload
    31+L    ...   payload: per tile (row-major; one if T = 0), its 8-byte
                  symbol checksum if T > 0, then each of the model's strings
                  in the sorted order of their names, as a LEB128 length
                  followed by the bytes

The model id names the exact weights that wrote the file, so decompression
finds the model without being told and refuses a file from another model;
the quality level is the other input the decoder needs. The CRC catches
accidental damage; the symbol checksum, verified by the model's decoder,
catches what decodes to other symbols than were encoded, whatever the
cause. A tiled file (T > 0) codes each tile of T x T latents on its own and
records each tile's symbol checksum; the header's is then the fingerprint of
those. The payload's framing costs 8 bytes a tile and 1 to 3 bytes a string
(the `tfc.PackedTensors` of versions 1 to 3 cost about 50 bytes a tile).
Versions 1 to 3 are still read: version 3 as version 4 with a
`PackedTensors` payload (the strings one per tile in a feature per name, the
tiles' checksums in one more), version 2 as one piece (no T), version 1
(single-rate models) as quality 1 and no symbol checksum.
"""

import dataclasses
import struct
import zlib

import tensorflow as tf
import tensorflow_compression as tfc

MAGIC = b"TSTH"
VERSION = 4
SUFFIX = ".tsth"
_SHAPE = struct.Struct(">IIB")  # height, width, channels
_QUALITY = struct.Struct(">H")  # quality level in hundredths
_TILE = struct.Struct(">H")  # side of a coding tile in latents
CHECKSUM_SIZE = 8
QUALITY_SCALE = 100
_CRC = struct.Struct(">I")
# Larger shapes are refused: a decoder must not allocate unbounded memory.
MAX_SIDE = 1 << 15
MAX_PIXELS = 1 << 28


class BitstreamError(ValueError):
  """The bytes are not a valid .tsth file."""


@dataclasses.dataclass(frozen=True)
class Header:
  model_id: str
  height: int
  width: int
  channels: int
  quality: float = 1.
  checksum: bytes = bytes(CHECKSUM_SIZE)  # Of the symbols; v1: none.
  tile: int = 0  # Latents per side of a coding tile; 0: one piece.
  version: int = VERSION  # Of the format; `pack` writes only VERSION.

  def __post_init__(self):
    if not (0 < self.height <= MAX_SIDE and 0 < self.width <= MAX_SIDE
            and self.height * self.width <= MAX_PIXELS):
      raise ValueError(f"image size {self.width}x{self.height} out of range "
                       f"(1 to {MAX_SIDE} per side, at most {MAX_PIXELS} "
                       "pixels)")
    if self.channels not in (1, 3):
      raise ValueError(f"unsupported channel count {self.channels}")
    if not 1 <= self.quality_code <= 0xFFFF:
      raise ValueError(f"quality {self.quality} out of range")
    if len(self.checksum) != CHECKSUM_SIZE:
      raise ValueError(f"symbol checksum of {len(self.checksum)} bytes")
    if not 0 <= self.tile <= 0xFFFF:
      raise ValueError(f"tile side {self.tile} out of range")
    if not 1 <= self.version <= VERSION:
      raise ValueError(f"format version {self.version}")

  @property
  def quality_code(self):
    return round(self.quality * QUALITY_SCALE)


def quantize_quality(quality):
  """The quality a header can record (steps of 0.01), as coded with."""
  return round(float(quality) * QUALITY_SCALE) / QUALITY_SCALE


def pack(header, strings, tile_checksums=None):
  """Header + `{name: string[tiles] tensor or list of bytes}` (+ a tiled
  header's symbol checksums, 8 bytes per tile) -> bytes of the current
  version."""
  if header.version != VERSION:
    raise ValueError(f"writes format version {VERSION} only")
  columns = [_values(strings[n]) for n in sorted(strings)]
  if len({len(c) for c in columns}) != 1:
    raise ValueError("every name needs one string per tile")
  tiles = list(zip(*columns))
  if header.tile:
    if len(tile_checksums) != len(tiles) or any(
        len(c) != CHECKSUM_SIZE for c in tile_checksums):
      raise ValueError(f"{len(tiles)} tiles need as many checksums of "
                       f"{CHECKSUM_SIZE} bytes")
  elif len(tiles) != 1:
    raise ValueError(f"{len(tiles)} strings per name in a file of one piece")
  payload = bytearray()
  for i, tile in enumerate(tiles):
    if header.tile:
      payload += tile_checksums[i]
    for string in tile:
      payload += _varint(len(string)) + string
  model_id = header.model_id.encode("ascii")
  if len(model_id) > 255:
    raise ValueError("Model id longer than 255 bytes.")
  head = b"".join([
      MAGIC, bytes([VERSION, len(model_id)]), model_id,
      _SHAPE.pack(header.height, header.width, header.channels),
      _QUALITY.pack(header.quality_code), header.checksum,
      _TILE.pack(header.tile)])
  payload = bytes(payload)
  return head + _CRC.pack(zlib.crc32(head + payload)) + payload


def _values(strings):
  """A string tensor (or a list of bytes) -> list of bytes."""
  if isinstance(strings, (list, tuple)):
    return list(strings)
  return [bytes(v) for v in strings.numpy().tolist()]


def _varint(value):
  """Unsigned LEB128: 7 bits a byte, least significant first."""
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


# A string length takes at most this many bytes (up to 2^35 - 1; a payload
# is far shorter).
_MAX_VARINT_BYTES = 5


def _read_varint(payload, at):
  """(value, next offset) of the minimal LEB128 at `at`; None if there is
  none (truncated, too long, or with needless trailing zero groups)."""
  value = 0
  for i in range(_MAX_VARINT_BYTES):
    if at + i >= len(payload):
      return None
    byte = payload[at + i]
    value |= (byte & 0x7F) << (7 * i)
    if not byte & 0x80:
      if i and not byte:  # Not minimal: one encoding per length.
        return None
      return value, at + i + 1
  return None


def crc_offset(version, id_length):
  """Where the CRC starts in a header of this version and model id length:
  the fields it covers end there."""
  return 6 + id_length + _SHAPE.size + (
      _QUALITY.size + CHECKSUM_SIZE if version > 1 else 0) + (
          _TILE.size if version > 2 else 0)


def read_header(data):
  """bytes -> (Header, payload bytes), checking magic, version and checksum."""
  if len(data) < len(MAGIC) + 2 or data[:len(MAGIC)] != MAGIC:
    raise BitstreamError("not a tfc-sth file (bad magic number)")
  version, id_length = data[4], data[5]
  if not 1 <= version <= VERSION:
    raise BitstreamError(f"unsupported format version {version} (this "
                         f"tfc-sth reads 1 to {VERSION})")
  start = 6 + id_length
  end = crc_offset(version, id_length)
  if len(data) < end + _CRC.size:
    raise BitstreamError("truncated file (header incomplete)")
  crc, = _CRC.unpack_from(data, end)
  payload = data[end + _CRC.size:]
  if zlib.crc32(data[:end] + payload) != crc:
    raise BitstreamError("corrupted or truncated file (checksum mismatch)")
  try:
    model_id = data[6:start].decode("ascii")
  except UnicodeDecodeError:
    raise BitstreamError("corrupted header (model id)") from None
  extra = dict(version=version)
  if version > 1:
    at = start + _SHAPE.size
    at_checksum = at + _QUALITY.size
    extra.update(quality=_QUALITY.unpack_from(data, at)[0] / QUALITY_SCALE,
                 checksum=data[at_checksum:at_checksum + CHECKSUM_SIZE])
  if version > 2:
    extra["tile"], = _TILE.unpack_from(data, end - _TILE.size)
  try:
    header = Header(model_id, *_SHAPE.unpack_from(data, start), **extra)
  except ValueError:
    raise BitstreamError("corrupted header (image shape or quality)") from None
  return header, payload


def unpack_strings(payload, names, tiles=None, version=VERSION):
  """Payload bytes -> {name: string[1] tensor} for the given string names;
  for a tiled file, ({name: string[tiles]}, [8-byte checksum per tile])."""
  names = sorted(names)
  if version < 4:
    columns = _unpack_packed_tensors(payload, len(names) + bool(tiles),
                                     tiles or 1)
    checksums = columns.pop() if tiles else None
  else:
    columns, checksums = _unpack_records(payload, len(names), tiles)
  strings = {n: tf.constant(c, tf.string) for n, c in zip(names, columns)}
  if not tiles:
    return strings
  if any(len(c) != CHECKSUM_SIZE for c in checksums):
    raise BitstreamError("corrupted payload (tile checksums)")
  return strings, checksums


def _unpack_records(payload, count, tiles):
  """Version 4: `count` strings per tile, after the tile's checksum if
  tiled -> ([strings per name], [checksum per tile] or None)."""
  columns = [[] for _ in range(count)]
  checksums = [] if tiles else None
  at = 0
  for _ in range(tiles or 1):
    if tiles:
      if at + CHECKSUM_SIZE > len(payload):
        raise BitstreamError("corrupted payload (strings missing)")
      checksums.append(payload[at:at + CHECKSUM_SIZE])
      at += CHECKSUM_SIZE
    for column in columns:
      read = _read_varint(payload, at)
      if read is None or read[0] > len(payload) - read[1]:
        raise BitstreamError("corrupted payload (strings missing)")
      length, at = read
      column.append(payload[at:at + length])
      at += length
  if at != len(payload):
    raise BitstreamError("corrupted payload (bytes after the last string)")
  return columns, checksums


def _unpack_packed_tensors(payload, count, tiles):
  """Versions 1 to 3: `count` string tensors of `tiles` values each, from a
  `tfc.PackedTensors` -> lists of bytes."""
  try:
    tensors = tfc.PackedTensors(payload).unpack([tf.string] * count)
  except Exception:  # pylint: disable=broad-except
    raise BitstreamError("corrupted payload") from None
  # A missing or mistyped entry unpacks to an empty tensor, not an error.
  if any(t.shape != [tiles] for t in tensors):
    raise BitstreamError("corrupted payload (strings missing)")
  return [t.numpy().tolist() for t in tensors]

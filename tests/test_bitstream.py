"""The .tsth container: round trip, and a clear BitstreamError for bad bytes."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.runtime import bitstream

MODEL_ID = "mean_scale_hyperprior-0123456789ab"
CHECKSUM = bytes(range(1, 9))
HEADER = bitstream.Header(MODEL_ID, height=70, width=130, channels=3,
                          quality=4.25, checksum=CHECKSUM)
STRINGS = {
    "z_string": tf.constant([b"\x00\x01zz\xff"]),
    "y_string": tf.constant([bytes(range(256)) * 3]),
}
NAMES = ("y_string", "z_string")
# Offsets of the layout documented in bitstream.py.
HEADER_END = 31 + len(MODEL_ID)  # Where the payload starts.


def _packed():
  return bitstream.pack(HEADER, STRINGS)


def _with_payload(payload, header=HEADER, version=4, tile=0):
  """A file with a correct checksum around arbitrary payload bytes.

  `header` is a `Header` or a (model id, height, width, channels, quality
  in hundredths) tuple, which may hold values a `Header` refuses.
  """
  if isinstance(header, bitstream.Header):
    header = (header.model_id, header.height, header.width, header.channels,
              header.quality_code)
  model_id, height, width, channels, quality = header
  model_id = model_id.encode("ascii")
  head = (bitstream.MAGIC + bytes([version, len(model_id)]) +
          model_id + struct.pack(">IIBH", height, width, channels, quality) +
          CHECKSUM + struct.pack(">H", tile))
  return head + struct.pack(">I", zlib.crc32(head + payload)) + payload


def _packed_tensors(*values):
  """A payload of versions 1 to 3: a tfc.PackedTensors of string tensors."""
  packed = tfc.PackedTensors()
  packed.pack([tf.constant(v, tf.string) for v in values])
  return packed.string


def _example(**features):
  """A serialized tf.train.Example: what tfc.PackedTensors is made of."""
  example = tf.train.Example()
  for key, (kind, values) in features.items():
    getattr(example.features.feature[key], kind).value[:] = values
  return example.SerializeToString()


# Round trip.

@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip(channels):
  header = bitstream.Header(MODEL_ID, 1, bitstream.MAX_SIDE, channels)
  data = bitstream.pack(header, STRINGS)
  assert data.startswith(b"TSTH\x04")
  read, payload = bitstream.read_header(data)
  assert read == header
  assert data.endswith(payload) and len(payload) > 0
  strings = bitstream.unpack_strings(payload, NAMES)
  assert set(strings) == set(NAMES)
  for name in NAMES:
    np.testing.assert_array_equal(strings[name].numpy(),
                                  STRINGS[name].numpy())
    assert strings[name].dtype == tf.string


def test_round_trip_names_order_does_not_matter():
  _, payload = bitstream.read_header(_packed())
  strings = bitstream.unpack_strings(payload, reversed(NAMES))
  assert strings["z_string"].numpy()[0] == b"\x00\x01zz\xff"
  assert strings["y_string"].numpy()[0] == bytes(range(256)) * 3


def test_layout_matches_documentation():
  data = _packed()
  assert data[:4] == b"TSTH"
  assert data[4] == 4
  assert data[5] == len(MODEL_ID)
  assert data[6:6 + len(MODEL_ID)] == MODEL_ID.encode("ascii")
  assert struct.unpack_from(">IIBH", data, 6 + len(MODEL_ID)) == (
      70, 130, 3, 425)
  assert data[17 + len(MODEL_ID):25 + len(MODEL_ID)] == CHECKSUM
  assert data[25 + len(MODEL_ID):27 + len(MODEL_ID)] == b"\x00\x00"  # T
  crc, = struct.unpack_from(">I", data, HEADER_END - 4)
  assert crc == zlib.crc32(data[:HEADER_END - 4] + data[HEADER_END:])
  # One piece: each string in the sorted order of the names, after its
  # length in LEB128 (768 = 0b110_0000000: 0x80, 0x06).
  assert data[HEADER_END:] == (b"\x80\x06" + bytes(range(256)) * 3 +
                               b"\x05\x00\x01zz\xff")


def test_tiled_layout_matches_documentation():
  header = bitstream.Header(MODEL_ID, 3000, 2000, 3, 2., CHECKSUM, tile=64)
  strings = {"z_string": [b"x", b"yy"], "y_string": [b"a" * 200, b""]}
  data = bitstream.pack(header, strings, [b"checksm0", b"checksm1"])
  assert data[25 + len(MODEL_ID):27 + len(MODEL_ID)] == b"\x00\x40"  # T
  # Per tile: its checksum, then its strings, each after its length.
  assert data[HEADER_END:] == (b"checksm0" + b"\xc8\x01" + b"a" * 200 +
                               b"\x01x" + b"checksm1" + b"\x00" + b"\x02yy")


def test_empty_strings_round_trip():
  strings = {"a": tf.constant([b""]), "b": tf.constant([b"x"])}
  header, payload = bitstream.read_header(bitstream.pack(HEADER, strings))
  assert header == HEADER
  out = bitstream.unpack_strings(payload, ["a", "b"])
  assert out["a"].numpy().tolist() == [b""]
  assert out["b"].numpy().tolist() == [b"x"]


def test_reads_version_1_as_quality_1():
  # Version 1 (single-rate models) had no quality field.
  model_id = MODEL_ID.encode("ascii")
  head = (b"TSTH\x01" + bytes([len(model_id)]) + model_id +
          struct.pack(">IIB", 70, 130, 3))
  payload = _packed_tensors([b"y"], [b"z"])
  data = head + struct.pack(">I", zlib.crc32(head + payload)) + payload
  header, read_payload = bitstream.read_header(data)
  assert header == bitstream.Header(MODEL_ID, 70, 130, 3, quality=1.,
                                    version=1)
  assert header.checksum == bytes(8)
  strings = bitstream.unpack_strings(read_payload, NAMES, version=1)
  assert strings["z_string"].numpy().tolist() == [b"z"]


def test_reads_version_2_as_one_piece():
  # Version 2 had no tile side: its payload is one string per name.
  model_id = MODEL_ID.encode("ascii")
  head = (b"TSTH\x02" + bytes([len(model_id)]) + model_id +
          struct.pack(">IIBH", 70, 130, 3, 425) + CHECKSUM)
  payload = _packed_tensors([b"y"], [b"z"])
  data = head + struct.pack(">I", zlib.crc32(head + payload)) + payload
  header, read_payload = bitstream.read_header(data)
  assert header == dataclasses.replace(HEADER, version=2)
  assert header.tile == 0
  strings = bitstream.unpack_strings(read_payload, NAMES, version=2)
  assert strings["y_string"].numpy().tolist() == [b"y"]


def test_reads_version_3_tiles():
  # Version 3: a PackedTensors, one feature per name and one of checksums.
  checksums = [b"checksm0", b"checksm1"]
  payload = _packed_tensors([b"a", b""], [b"x", b"yy"], checksums)
  data = _with_payload(payload, version=3, tile=64)
  header, read_payload = bitstream.read_header(data)
  assert header.version == 3 and header.tile == 64
  strings, read_checksums = bitstream.unpack_strings(read_payload, NAMES,
                                                     tiles=2, version=3)
  assert strings["y_string"].numpy().tolist() == [b"a", b""]
  assert strings["z_string"].numpy().tolist() == [b"x", b"yy"]
  assert read_checksums == checksums
  with pytest.raises(bitstream.BitstreamError, match="strings missing"):
    bitstream.unpack_strings(read_payload, NAMES, tiles=3, version=3)


def test_tiled_round_trip():
  header = bitstream.Header(MODEL_ID, 3000, 2000, 3, 2., CHECKSUM, tile=64)
  strings = {"y_string": tf.constant([b"a", b"", b"c"]),
             "z_string": tf.constant([b"x", b"y", b"z"])}
  checksums = [bytes([i] * 8) for i in range(3)]
  read, payload = bitstream.read_header(
      bitstream.pack(header, strings, checksums))
  assert read == header
  out, out_checksums = bitstream.unpack_strings(payload, NAMES, tiles=3)
  assert out["y_string"].numpy().tolist() == [b"a", b"", b"c"]
  assert out["z_string"].numpy().tolist() == [b"x", b"y", b"z"]
  assert out_checksums == checksums
  with pytest.raises(bitstream.BitstreamError, match="strings missing"):
    bitstream.unpack_strings(payload, NAMES, tiles=4)


def test_tile_checksums_of_another_length_are_refused():
  header = bitstream.Header(MODEL_ID, 30, 20, 3, tile=16)
  with pytest.raises(ValueError, match="checksums of 8 bytes"):
    bitstream.pack(header, {"y_string": [b"a"]}, [b"1234"])
  with pytest.raises(ValueError, match="checksums of 8 bytes"):
    bitstream.pack(header, {"y_string": [b"a", b"b"]}, [b"checksum"])
  payload = _packed_tensors([b"a"], [b"1234"])  # Version 3 could hold them.
  with pytest.raises(bitstream.BitstreamError, match="tile checksums"):
    bitstream.unpack_strings(payload, ["y_string"], tiles=1, version=3)


def test_pack_refuses_strings_of_unequal_counts():
  header = bitstream.Header(MODEL_ID, 30, 20, 3, tile=16)
  with pytest.raises(ValueError, match="one string per tile"):
    bitstream.pack(header, {"y_string": [b"a", b"b"], "z_string": [b"c"]},
                   [b"checksum"] * 2)


def test_pack_writes_only_the_current_version():
  with pytest.raises(ValueError, match="version 4 only"):
    bitstream.pack(dataclasses.replace(HEADER, version=3), STRINGS)


@pytest.mark.parametrize("quality, recorded", [
    (1, 1.), (2.5, 2.5), (3.14159, 3.14), (7.999, 8.), (655.35, 655.35)])
def test_quality_is_recorded_in_hundredths(quality, recorded):
  assert bitstream.quantize_quality(quality) == recorded
  header = bitstream.Header(MODEL_ID, 4, 4, 3, recorded)
  read, _ = bitstream.read_header(bitstream.pack(header, STRINGS))
  assert read.quality == recorded


# pack refuses headers it cannot write.

@pytest.mark.parametrize("quality", [0., 0.004, 655.36, 1e9])
def test_header_rejects_qualities_it_cannot_record(quality):
  with pytest.raises(ValueError, match="quality"):
    bitstream.Header(MODEL_ID, 4, 4, 3, quality)


def test_header_rejects_checksums_of_another_size():
  with pytest.raises(ValueError, match="checksum"):
    bitstream.Header(MODEL_ID, 4, 4, 3, 1., b"1234")

def test_pack_rejects_bad_channels():
  with pytest.raises(ValueError, match="channel"):
    bitstream.pack(bitstream.Header(MODEL_ID, 4, 4, 2), STRINGS)


@pytest.mark.parametrize("height, width", [
    (0, 4), (4, 0), (bitstream.MAX_SIDE + 1, 4), (bitstream.MAX_SIDE,
                                                  bitstream.MAX_SIDE)])
def test_header_rejects_bad_or_huge_shapes(height, width):
  with pytest.raises(ValueError, match="out of range"):
    bitstream.Header(MODEL_ID, height, width, 3)


def test_pack_rejects_long_model_id():
  with pytest.raises(ValueError, match="255"):
    bitstream.pack(bitstream.Header("x" * 256, 4, 4, 3), STRINGS)


# read_header errors.

def test_empty_bytes():
  with pytest.raises(bitstream.BitstreamError, match="not a tfc-sth file"):
    bitstream.read_header(b"")


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    b"tsth" + _with_payload(b"")[4:],
    b"XSTH" + _with_payload(b"")[4:],
    b"TST",
])
def test_wrong_magic(data):
  with pytest.raises(bitstream.BitstreamError, match="bad magic"):
    bitstream.read_header(data)


@pytest.mark.parametrize("version", [0, 5, 255])
def test_unsupported_version(version):
  data = bytearray(_packed())
  data[4] = version
  with pytest.raises(bitstream.BitstreamError,
                     match=f"unsupported format version {version}"):
    bitstream.read_header(bytes(data))


def test_truncated_header():
  data = _packed()
  for length in range(HEADER_END):
    with pytest.raises(bitstream.BitstreamError) as info:
      bitstream.read_header(data[:length])
    if length >= 6:  # Magic, version and id length are there.
      assert "truncated" in str(info.value), length


def test_truncated_payload():
  data = _packed()
  for length in range(HEADER_END, len(data)):
    with pytest.raises(bitstream.BitstreamError, match="checksum"):
      bitstream.read_header(data[:length])


def test_appended_bytes():
  with pytest.raises(bitstream.BitstreamError, match="checksum"):
    bitstream.read_header(_packed() + b"\x00")


def test_every_flipped_bit_is_detected():
  data = _packed()
  bitstream.read_header(data)  # The original is fine.
  for i in range(len(data)):
    for bit in range(8):
      flipped = bytearray(data)
      flipped[i] ^= 1 << bit
      with pytest.raises(bitstream.BitstreamError):
        bitstream.read_header(bytes(flipped))
        pytest.fail(f"flipped bit {bit} of byte {i} not detected")


def test_flipped_payload_bit_reports_checksum():
  data = bytearray(_packed())
  data[HEADER_END + 10] ^= 0x10
  with pytest.raises(bitstream.BitstreamError, match="checksum mismatch"):
    bitstream.read_header(bytes(data))


def test_non_ascii_model_id_with_valid_checksum():
  data = bytearray(_with_payload(b""))
  data[6] = 0xff
  crc = zlib.crc32(bytes(data[:HEADER_END - 4]))
  data[HEADER_END - 4:HEADER_END] = struct.pack(">I", crc)
  with pytest.raises(bitstream.BitstreamError, match="model id"):
    bitstream.read_header(bytes(data))


@pytest.mark.parametrize("height,width", [
    (0, 5), (5, 0), (bitstream.MAX_SIDE + 1, 5), (2 ** 32 - 1, 5)])
def test_bad_image_size_with_valid_checksum(height, width):
  data = _with_payload(b"", (MODEL_ID, height, width, 3, 100))
  with pytest.raises(bitstream.BitstreamError, match="image shape"):
    bitstream.read_header(data)


def test_bad_channels_with_valid_checksum():
  data = _with_payload(b"", (MODEL_ID, 5, 5, 4, 100))
  with pytest.raises(bitstream.BitstreamError, match="image shape"):
    bitstream.read_header(data)


def test_zero_quality_with_valid_checksum():
  data = _with_payload(b"", (MODEL_ID, 5, 5, 3, 0))
  with pytest.raises(bitstream.BitstreamError, match="quality"):
    bitstream.read_header(data)


# Payloads that pass the checksum but are not the model's strings.

@pytest.mark.parametrize("payload, message", [
    (b"", "strings missing"),
    (b"hello, world", "strings missing"),  # 'h': a length of 104.
    (b"\x02y", "strings missing"),  # The second string's length is missing.
    (b"\x01y\x03zz", "strings missing"),  # Its bytes end early.
    (b"\x80\x00", "strings missing"),  # A length in two bytes where one does.
    (b"\xff\xff\xff\xff\xff\x01", "strings missing"),  # Too long a length.
    (b"\x00" * 16, "bytes after the last string"),
    (b"\x01y\x01zz", "bytes after the last string"),
], ids=["empty", "text", "one_string", "short_string", "overlong_length",
        "huge_length", "zeros", "trailing"])
def test_payload_not_strings(payload, message):
  header, read_payload = bitstream.read_header(_with_payload(payload))
  assert header == HEADER and read_payload == payload
  with pytest.raises(bitstream.BitstreamError, match=message):
    bitstream.unpack_strings(read_payload, NAMES)


def test_tiled_payload_with_fewer_tiles():
  header = bitstream.Header(MODEL_ID, 3000, 2000, 3, 2., CHECKSUM, tile=64)
  data = bitstream.pack(header, {"y_string": [b"a", b"b"]},
                        [b"checksm0", b"checksm1"])
  _, payload = bitstream.read_header(data)
  for tiles in (3, 4):
    with pytest.raises(bitstream.BitstreamError, match="strings missing"):
      bitstream.unpack_strings(payload, ["y_string"], tiles=tiles)
  with pytest.raises(bitstream.BitstreamError, match="bytes after"):
    bitstream.unpack_strings(payload, ["y_string"], tiles=1)


@pytest.mark.parametrize("payload", [
    b"hello, world",
    b"\x00" * 16,
    bytes(range(256)),
    b"",  # An empty Example: no strings at all.
    _example(),
    _example(**{"\x01": ("bytes_list", [b"only one string"])}),
    _example(**{"\x01": ("int64_list", [1, 2]),
                "\x02": ("int64_list", [3])}),
    _example(**{"\x01": ("bytes_list", [b"a", b"b"]),
                "\x02": ("bytes_list", [b"c"])}),
], ids=["text", "zeros", "bytes", "empty", "empty_example", "one_string",
        "integers", "two_strings_in_one"])
def test_version_3_payload_not_packed_strings(payload):
  header, read_payload = bitstream.read_header(
      _with_payload(payload, version=3))
  assert header == dataclasses.replace(HEADER, version=3)
  with pytest.raises(bitstream.BitstreamError, match="corrupted payload"):
    bitstream.unpack_strings(read_payload, NAMES, version=3)

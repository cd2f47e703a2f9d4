"""A TensorBoard event-file writer with no TensorFlow, torch or protobuf.

Event files are TFRecord files of serialized `tensorflow.Event` protos. The few
messages needed here (scalars, PNG images, text) are encoded by hand; TensorBoard reads
the files as it reads TensorFlow's (tests/test_writers.py reads them with TensorFlow).
tensorboardX would write the same files, but importing it imports torch wherever torch
is installed, on every run.
"""

import io
import os
import socket
import struct
import time

import numpy as np
from PIL import Image

# ------------------------------------------------------------------------ CRC32C


def _crc32c_table():
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  table = _CRC_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# -------------------------------------------------------------- protobuf encoding


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint((field << 3) | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
  return _key(field, 2) + _varint(len(payload)) + payload


def _event(step: int, summary_values: list[bytes] = (), file_version: str | None = None) -> bytes:
  out = _key(1, 1) + struct.pack("<d", time.time()) + _key(2, 0) + _varint(step)
  if file_version is not None:
    out += _bytes_field(3, file_version.encode())
  if summary_values:
    out += _bytes_field(5, b"".join(_bytes_field(1, v) for v in summary_values))
  return out


def _scalar_value(tag: str, value: float) -> bytes:
  return _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", value)


def _image_value(tag: str, image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  height, width, channels = image.shape
  encoded = (_key(1, 0) + _varint(height) + _key(2, 0) + _varint(width) + _key(3, 0)
             + _varint(channels) + _bytes_field(4, buffer.getvalue()))
  return _bytes_field(1, tag.encode()) + _bytes_field(4, encoded)


def _text_value(tag: str, text: str) -> bytes:
  metadata = _bytes_field(1, _bytes_field(1, b"text"))  # plugin_data.plugin_name
  tensor = _key(1, 0) + _varint(7) + _bytes_field(2, b"") + _bytes_field(8, text.encode())
  return _bytes_field(1, tag.encode()) + _bytes_field(9, metadata) + _bytes_field(8, tensor)


# ------------------------------------------------------------------------ writer


class EventWriter:
  """Appends summaries to a new event file in `logdir`, created with the first summary
  (a run that fails before writing any leaves no empty event file)."""

  def __init__(self, logdir: str):
    self.logdir = logdir
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self.path = os.path.join(logdir, name)
    self._file = None

  def _write(self, record: bytes) -> None:
    if self._file is None:
      os.makedirs(self.logdir, exist_ok=True)
      self._file = open(self.path, "ab")
      self._write_record(_event(0, file_version="brain.Event:2"))
    self._write_record(record)

  def _write_record(self, record: bytes) -> None:
    header = struct.pack("<Q", len(record))
    self._file.write(header + struct.pack("<I", _masked_crc(header)) + record
                     + struct.pack("<I", _masked_crc(record)))

  def scalar(self, tag: str, value: float, step: int) -> None:
    self._write(_event(step, [_scalar_value(tag, float(value))]))

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """image: uint8 [H, W, C] with C in {1, 3, 4}."""
    self._write(_event(step, [_image_value(tag, np.asarray(image, np.uint8))]))

  def text(self, tag: str, text: str, step: int) -> None:
    self._write(_event(step, [_text_value(tag, text)]))

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()

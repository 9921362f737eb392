"""Reads a (compressed) tar archive as a stream of members, fast, in memory.

`tarfile` spends ~40 us of Python per member, 2.4 s for the 60,000 members of
an image-folder archive; this reader parses the ustar headers of the
decompressed stream directly (~5 us per member), and yields each member as
soon as its bytes are in, so that the caller can work on the first CIFAR-10
batch while the next ones are still being decompressed. It handles what GNU
tar, bsdtar and Python's tarfile write: ustar name prefixes, GNU long names
and pax path/size records. Nothing is written to disk, so member names cannot
escape anywhere.
"""

import bz2
import lzma
import zlib

from tfcifar.errors import DataError

_BLOCK = 512
_READ_SIZE = 1 << 20
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_DECOMPRESSORS = (  # (magic, name, new decompressor)
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    (b"BZh", "bzip2", bz2.BZ2Decompressor),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMADecompressor),
)


def _number(field, path, offset):
  """A tar numeric field: octal text, or base-256 when the top bit is set."""
  if field[0] & 0x80:
    return int.from_bytes(field[1:], "big")
  text = field.split(b"\0", 1)[0].strip()
  try:
    return int(text, 8) if text else 0
  except ValueError:
    raise DataError(f"{path} is not a tar archive (bad header at byte "
                    f"{offset})") from None


def _pax_records(data):
  """{key: value} of a pax extended header (`<len> key=value\\n` records)."""
  records = {}
  pos = 0
  while pos < len(data):
    space = data.index(b" ", pos)
    length = int(data[pos:space])
    key, _, value = data[space + 1:pos + length - 1].partition(b"=")
    records[key] = value
    pos += length
  return records


class _Parser:
  """Turns the uncompressed tar bytes, fed in pieces, into (name, bytes)."""

  def __init__(self, path):
    self.path = path
    self.buffer = bytearray()
    self.pos = 0  # of the next header in `buffer`
    self.offset = 0  # of `buffer[0]` in the archive
    self.long_name = None
    self.pax = {}
    self.ended = False

  def feed(self, data):
    """Yields the members completed by `data`."""
    if self.ended:
      return
    if self.pos > len(self.buffer) // 2:
      del self.buffer[:self.pos]
      self.offset += self.pos
      self.pos = 0
    self.buffer += data
    yield from self._members()

  def _members(self):
    buffer = self.buffer
    while len(buffer) - self.pos >= _BLOCK:
      header = bytes(buffer[self.pos:self.pos + _BLOCK])
      if header == _ZERO_BLOCK:
        self.ended = True
        return
      name, kind, size = self._header(header)
      start = self.pos + _BLOCK
      end = start + -(-size // _BLOCK) * _BLOCK
      if end > len(buffer):
        return  # wait for the rest of this member
      self.pos = end
      with memoryview(buffer) as view:
        data = bytes(view[start:start + size])
      if kind == b"L":
        self.long_name = data.split(b"\0", 1)[0]
      elif kind == b"x":
        self.pax = _pax_records(data)
      else:
        self.long_name, self.pax = None, {}
        if kind in _REGULAR:
          text = name.decode("utf-8", "surrogateescape")
          while text.startswith("./"):
            text = text[2:]
          yield text, data

  def _header(self, header):
    where = self.offset + self.pos
    if (_number(header[148:156], self.path, where) !=
        sum(header) - sum(header[148:156]) + 8 * 32):
      raise DataError(f"{self.path} is not a tar archive (bad header "
                      f"checksum at byte {where})")
    kind = header[156:157]
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":  # POSIX; GNU uses the field otherwise
      prefix = header[345:500].split(b"\0", 1)[0]
      if prefix:
        name = prefix + b"/" + name
    size = _number(header[124:136], self.path, where)
    if kind not in (b"x", b"g", b"L"):
      name = self.pax.get(b"path", self.long_name or name)
      size = int(self.pax.get(b"size", size))
    return name, kind, size

  def finish(self):
    if self.ended:
      return
    if self.offset + len(self.buffer) < _BLOCK:
      raise DataError(f"{self.path} is not a tar archive")
    raise DataError(f"{self.path} is truncated (the archive ends inside a "
                    "member or lacks its end marker)")


def _decompressed(f, path):
  """Yields the uncompressed bytes of file `f` (gzip, bzip2, xz or plain)."""
  data = f.read(_READ_SIZE)
  for magic, kind, new in _DECOMPRESSORS:
    if data.startswith(magic):
      break
  else:
    while data:
      yield data
      data = f.read(_READ_SIZE)
    return
  decompressor = new()
  try:
    while data:
      yield decompressor.decompress(data)
      while decompressor.eof and decompressor.unused_data.strip(b"\0"):
        data, decompressor = decompressor.unused_data, new()  # concatenated
        yield decompressor.decompress(data)
      data = f.read(_READ_SIZE)
  except (OSError, ValueError, EOFError, zlib.error, lzma.LZMAError) as e:
    raise DataError(f"{path} is corrupt ({kind}: {e})") from None
  if not decompressor.eof:
    raise DataError(f"{path} is truncated (the {kind} stream ends early)")


def iter_members(path):
  """Yields (name, bytes) of each regular file, as the archive is read.

  Names are str with a leading './' removed. Raises DataError when the file
  is not a tar archive or is truncated or corrupt.
  """
  parser = _Parser(path)
  with open(path, "rb") as f:
    for data in _decompressed(f, path):
      yield from parser.feed(data)
  parser.finish()


def read_members(path):
  """{name: bytes} of the regular files of the tar archive at `path`."""
  return dict(iter_members(path))

"""The streaming tar reader (`tfcifar.convert.tar`) against what Python's
tarfile writes, and on damaged archives: each damage is a one-line DataError.
"""

import io
import tarfile

import pytest

from convert_helpers import write_bytes
from tfcifar.convert import tar
from tfcifar.errors import DataError

FILES = {"a/" + "long_folder_name/" * 6 + "x.png": b"1" * 700, "./b.txt": b"",
         "c/d/e.bin": bytes(range(256)) * 3}


def tar_bytes(format_, mode="w"):
  out = io.BytesIO()
  with tarfile.open(fileobj=out, mode=mode, format=format_) as archive:
    for name, data in FILES.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))
  return out.getvalue()


def read(path):
  return tar.read_members(path)


@pytest.mark.parametrize("format_", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT,
                                     tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_reader_matches_tarfile(tmp_path, format_, mode):
  data = tar_bytes(format_, mode)
  members = read(write_bytes(tmp_path / "t.tar", data))
  assert members == {k.removeprefix("./"): v for k, v in FILES.items()}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_damaged_archives_are_one_line_errors(tmp_path, mode):
  data = tar_bytes(tarfile.GNU_FORMAT, mode)
  # Plain: inside a member, after the last member (4,608 bytes: no end
  # marker). Compressed: mid-stream, its last byte.
  cuts = ({1300, 4608} if mode == "w" else
          {len(data) // 2, len(data) - 1})
  for cut in sorted(cuts):
    path = write_bytes(tmp_path / f"cut{cut}.tar", data[:cut])
    with pytest.raises(DataError, match="truncated|corrupt") as raised:
      read(path)
    assert "\n" not in str(raised.value)
  flipped = bytearray(data)
  flipped[len(data) // 2] ^= 0xFF
  if mode != "w":  # a compressed stream checks itself (CRC, structure)
    with pytest.raises(DataError, match="corrupt|truncated|not a tar"):
      read(write_bytes(tmp_path / "flipped.tar", bytes(flipped)))
  with pytest.raises(DataError, match="not a tar archive"):
    read(write_bytes(tmp_path / "text.tar", b"just text\n" * 99))


def test_a_bad_header_after_the_first_member_is_an_error(tmp_path):
  """(Python's tarfile, in streaming mode, stops there as if the archive
  ended: members would go missing silently.)"""
  data = bytearray(tar_bytes(tarfile.USTAR_FORMAT))
  second = 512 + 1024  # the header of the second member (after 700 bytes)
  assert data[second:second + 5] == b"./b.t"
  data[second + 148] ^= 0x01  # its checksum field
  with pytest.raises(DataError, match="bad header checksum at byte 1536"):
    read(write_bytes(tmp_path / "bad.tar", bytes(data)))

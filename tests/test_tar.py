"""The streaming tar reader (Python's tarfile) on what tar writers produce,
and on damaged archives: each damage is a one-line DataError."""

import io
import tarfile

import pytest

from convert_helpers import write_bytes
from tfcifar.convert import sources
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
  return dict(sources.tar_members(path))


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
  # marker), one zero block only. Compressed: mid-stream, its last byte.
  cuts = ({1300, 4608, 5120} if mode == "w" else
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

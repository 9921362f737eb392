"""Image folders: train/<class>/* and test/<class>/* of PNG or JPEG files.

On disk or inside a tar archive (under any one root folder). The class
folders must be the 10 CIFAR-10 classes; class ids follow the sorted class
names (which is `cifar10.CLASS_NAMES`). Files are taken in sorted order and
then put in a fixed pseudo-random order (`ORDER_SEED`), so that, like the
official batches, records and shards mix the classes. Hidden files and files
with other extensions are ignored; an image that does not decode or is not
32x32 is an error naming the file.
"""

import os

import numpy as np

from tfcifar import cifar10
from tfcifar.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
ORDER_SEED = 0


def is_image_name(name):
  return (not name.startswith(".") and
          os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


def member_place(name):
  """(root, split, class, file) of an archive member name, else None."""
  parts = name.split("/")
  if (len(parts) < 3 or parts[-3] not in cifar10.SPLITS or
      not is_image_name(parts[-1]) or any(p.startswith(".") for p in parts)):
    return None
  return ("/".join(parts[:-3]),) + tuple(parts[-3:])


def member_listing(members, path):
  """{split: {class: [(file, (display name, bytes))]}} of archive members."""
  listing, roots = {}, set()
  for name, data in members.items():
    root, split, label, file = member_place(name)
    roots.add(root)
    listing.setdefault(split, {}).setdefault(label, []).append(
        (file, (f"{path}:{name}", data)))
  if len(roots) > 1:
    raise DataError(f"{path} holds image folders under several roots: "
                    f"{', '.join(sorted(r + '/' for r in roots))}")
  return listing


def dir_listing(root):
  """{split: {class: [(file, path)]}} of an image folder on disk."""
  if not os.path.isdir(root):
    raise DataError(f"image folder {root} does not exist or is not a folder")
  listing = {}
  for split in cifar10.SPLITS:
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      continue
    for label in sorted(os.listdir(split_dir)):
      class_dir = os.path.join(split_dir, label)
      if label.startswith(".") or not os.path.isdir(class_dir):
        continue
      listing.setdefault(split, {})[label] = [
          (file, os.path.join(class_dir, file))
          for file in os.listdir(class_dir) if is_image_name(file)]
  return listing


def check_listing(listing, where):
  """Both splits, exactly the 10 classes, none of them empty."""
  for split in cifar10.SPLITS:
    classes = listing.get(split)
    if not classes:
      raise DataError(f"{where} has no {split}/<class>/ images (expected "
                      f"{split}/airplane/*.png|jpg ... {split}/truck/*)")
    unexpected = sorted(set(classes) - set(cifar10.CLASS_NAMES))
    if unexpected:
      raise DataError(f"{where}: {split}/{unexpected[0]}/ is not a CIFAR-10 "
                      f"class (expected {', '.join(cifar10.CLASS_NAMES)})")
    for name in cifar10.CLASS_NAMES:
      if not classes.get(name):
        raise DataError(f"{where}: class folder {split}/{name}/ has no PNG or "
                        "JPEG images")


def decode_listing(listing, where, workers, decode):
  """The splits of a listing: decoded in parallel, in the fixed order.

  `decode` is `workers.decode_files` (items are paths) or
  `workers.decode_members` (items are (name, bytes) pairs).
  """
  check_listing(listing, where)
  splits = {}
  for split in cifar10.SPLITS:
    items, labels = [], []
    for label, name in enumerate(cifar10.CLASS_NAMES):
      files = sorted(listing[split][name], key=lambda entry: entry[0])
      items += [item for _, item in files]
      labels += [label] * len(files)
    order = np.random.RandomState(ORDER_SEED).permutation(len(items))
    items = [items[i] for i in order]
    splits[split] = (decode(workers, items),
                     np.asarray(labels, np.int64)[order])
  return splits

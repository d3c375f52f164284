"""Image files in a folder or a zip of class folders: reading them within limits, and listing and checking
their layout."""

import dataclasses
import os
import pathlib
import struct
import zipfile
import zlib

import numpy as np
from etils import epy

from tf_lottery.data.splits import DataError

with epy.lazy_imports():
    import tensorflow as tf

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_SPLIT_SEED = 0

_SPLIT_FOLDERS = ("train", "test")
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name and extra field lengths


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """What an image file may be, checked before it is read (bytes, zip ratio) and decoded (pixels).

    The defaults fit any photo of ImageNet's size and refuse decompression
    bombs: a zip member that inflates to gigabytes, or a small file whose
    header asks for an image of tens of thousands of pixels a side.
    """
    max_bytes: int = 64 * 2**20  # of one file, as stored in a folder or inflated from a zip
    max_ratio: float = 100.0  # inflated / deflated bytes of a zip member (PNG and JPEG stay near 1)
    max_pixels: int = 40_000_000  # height x width from the header (a 7,000 x 5,700 photo)

    def check_size(self, name, size):
        """DataError naming the file if it holds more than max_bytes."""
        if size > self.max_bytes:
            raise DataError(f"{name}: {size:,} bytes, more than image_max_bytes={self.max_bytes:,} "
                            "(raise --image_max_bytes for larger files)")

    def check_member(self, name, info):
        """check_size of a zip member, and its compression ratio, from the zip's index."""
        self.check_size(name, max(info.file_size, info.compress_size))
        if info.compress_type == zipfile.ZIP_DEFLATED and (
                info.file_size > self.max_ratio * max(info.compress_size, 1)):
            raise DataError(f"{name}: inflates {info.compress_size:,} bytes to {info.file_size:,}, a ratio "
                            f"above image_max_ratio={self.max_ratio:g} (a zip bomb? raise "
                            "--image_max_ratio to read it)")

    def check_pixels(self, name, height, width):
        """DataError naming the file if its header gives more than max_pixels."""
        if height * width > self.max_pixels:
            raise DataError(f"{name}: {width}x{height} pixels ({height * width:,}), more than "
                            f"image_max_pixels={self.max_pixels:,} (raise --image_max_pixels for larger "
                            "images)")


def _hidden(part):
    return part.startswith(".") or part == "__MACOSX"


class _Folder:
    """Image files in a folder on disk; members are paths relative to it, with '/'."""

    def __init__(self, root, limits=ImageLimits()):
        self.root = root
        self.where = str(root)
        self.limits = limits

    def tree(self):
        """(set of folders, list of files), relative, hidden ones left out."""
        folders, files = set(), []
        for top, subfolders, names in os.walk(self.root):
            subfolders[:] = [name for name in subfolders if not _hidden(name)]
            relative = pathlib.Path(top).relative_to(self.root).as_posix()
            prefix = "" if relative == "." else relative + "/"
            folders.update(prefix + name for name in subfolders)
            files.extend(prefix + name for name in names if not _hidden(name))
        return folders, files

    def name(self, member):
        return str(self.root / member)

    def read(self, members, limit=-1):
        """The bytes of each member (the first `limit` only, if given); DataError if one is too large."""
        contents = []
        most = self.limits.max_bytes
        for member in members:
            try:
                with open(self.root / member, "rb") as file:
                    self.limits.check_size(self.name(member), os.fstat(file.fileno()).st_size)
                    content = file.read(limit if 0 <= limit <= most else most + 1)
            except OSError as error:
                raise DataError(f"{self.name(member)}: cannot be read ({error.strerror})") from None
            self.limits.check_size(self.name(member), len(content))  # it grew since
            contents.append(content)
        return contents

    def encoded(self, members):
        """Dataset of indices into `members` -> dataset of (the member's bytes, index), in the same order."""
        paths = tf.constant([str(self.root / member) for member in members])
        return lambda indices: indices.map(lambda i: (tf.io.read_file(tf.gather(paths, i)), i),
                                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class _Zip:
    """Image files inside a zip, read without extracting; members are paths below its top folder, if any.

    Members are read by offset (stored ones as they are, deflated ones through
    zlib, never inflating past the size the index gives), which is much faster
    than ZipFile.read and works from tf.data. A member is checked against the
    limits by its index entry before any of it is read.
    """

    def __init__(self, path, limits=ImageLimits()):
        self.path = path
        self.where = str(path)
        self.limits = limits
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
        except (OSError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: not a readable zip file ({error})") from None
        entries = {info.filename: info for info in infos
                   if not any(_hidden(part) for part in info.filename.split("/"))}
        tops = {name.split("/")[0] for name in entries}
        top = next(iter(tops)) if len(tops) == 1 else ""
        # A single top folder that holds folders (and is not train/ or test/ itself) is the layout's root.
        holds_folders = any(name.rstrip("/").count("/") >= 2 for name in entries)
        top = top + "/" if top and top not in _SPLIT_FOLDERS and holds_folders else ""
        self.prefix = top
        self.infos = {name[len(top):]: info for name, info in entries.items() if name != top}
        self._offsets = {}

    def tree(self):
        folders, files = set(), []
        for name, info in self.infos.items():
            parts = name.rstrip("/").split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if info.is_dir():
                folders.add(name.rstrip("/"))
            else:
                files.append(name)
        return folders, files

    def name(self, member):
        return f"{self.path}/{self.prefix}{member}"

    def _offset(self, member, descriptor):
        """Where a member's data starts (after its local header, whose lengths can differ from the index)."""
        if member not in self._offsets:
            info = self.infos[member]
            self.limits.check_member(self.name(member), info)
            if info.flag_bits & 1:
                raise DataError(f"{self.name(member)}: encrypted zip member")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise DataError(f"{self.name(member)}: zip compression method {info.compress_type}; only "
                                "stored and deflated members are read")
            header = os.pread(descriptor, _ZIP_LOCAL_HEADER.size, info.header_offset)
            if len(header) < _ZIP_LOCAL_HEADER.size or not header.startswith(b"PK\x03\x04"):
                raise DataError(f"{self.name(member)}: corrupt zip member (bad local header)")
            _, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack(header)
            self._offsets[member] = info.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length
        return self._offsets[member]

    def _locations(self, members, descriptor):
        """(offset, stored length, length, deflated) of each member, as arrays."""
        infos = [self.infos[member] for member in members]
        return (np.array([self._offset(member, descriptor) for member in members], np.int64),
                np.array([info.compress_size for info in infos], np.int64),
                np.array([info.file_size for info in infos], np.int64),
                np.array([info.compress_type == zipfile.ZIP_DEFLATED for info in infos]))

    def read(self, members, limit=-1):
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            locations = self._locations(members, descriptor)
            contents = []
            for member, location in zip(members, zip(*locations)):
                try:
                    content = _member_bytes(descriptor, *location, limit)
                except zlib.error as error:
                    raise DataError(f"{self.name(member)}: corrupt zip member ({error})") from None
                if len(content) != (location[2] if limit < 0 else min(limit, location[2])):
                    raise DataError(f"{self.name(member)}: truncated zip member")
                contents.append(content)
            return contents
        finally:
            os.close(descriptor)

    def encoded(self, members):
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            offsets, stored, lengths, deflated = self._locations(members, descriptor)
        finally:
            os.close(descriptor)
        path = self.path

        def member_bytes(i):
            descriptor = os.open(path, os.O_RDONLY)
            try:
                return _member_bytes(descriptor, offsets[i], stored[i], lengths[i], deflated[i])
            finally:
                os.close(descriptor)

        # A NumPy function: TensorFlow has no op that reads part of a file fast (FixedLengthRecordDataset per
        # member manages 200 a second). It only reads, so the iterator still checkpoints.
        return lambda indices: indices.map(
            lambda i: (tf.numpy_function(member_bytes, [i], tf.string, stateful=False), i),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _member_bytes(descriptor, offset, stored, length, deflated, limit=-1):
    """The (first `limit`) bytes of a zip member whose data starts at `offset`."""
    wanted = int(length if limit < 0 else min(limit, length))
    if not deflated:
        return os.pread(descriptor, wanted, int(offset))
    deflated_bytes = os.pread(descriptor, int(stored), int(offset))
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(deflated_bytes, wanted)


def _source(name, data_dir, zip_name, limits=ImageLimits()):
    if data_dir is None:
        raise DataError(f"dataset '{name}' needs --data_dir: a folder of class folders or a zip of one")
    data_dir = pathlib.Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"{data_dir}: data_dir for dataset '{name}' does not exist")
    if data_dir.is_file():
        return _Zip(data_dir, limits)
    if zip_name and (data_dir / zip_name).is_file():
        return _Zip(data_dir / zip_name, limits)
    entries = [entry for entry in data_dir.iterdir() if not _hidden(entry.name)]
    zips = [entry for entry in entries if entry.suffix.lower() == ".zip" and entry.is_file()]
    if len(zips) == 1 and not any(entry.is_dir() for entry in entries):
        return _Zip(zips[0], limits)
    return _Folder(data_dir, limits)


def _classes(source, folders, files, prefix):
    """{class name: its image members, sorted} of the class folders directly in `prefix`."""
    where = source.name(prefix.rstrip("/")) if prefix else source.where
    depth = prefix.count("/")
    classes = {folder[len(prefix):]: [] for folder in sorted(folders)
               if folder.startswith(prefix) and folder.count("/") == depth}
    nested = sorted(folder for folder in folders if folder.startswith(prefix) and folder.count("/") > depth)
    if nested:
        raise DataError(f"{source.name(nested[0])}: a folder inside a class folder (images must be directly "
                        "in their class folder)")
    for member in files:
        if member.startswith(prefix) and member.count("/") == depth + 1:
            classes[member[len(prefix):].split("/")[0]].append(member)
    if not classes:
        raise DataError(f"{where}: no class folders (expected <class>/<image> or train/<class>/<image> and "
                        "test/<class>/<image>)")
    if len(classes) < 2:
        raise DataError(f"{where}: only one class folder, '{next(iter(classes))}'; a classifier needs two")
    for name, members in classes.items():
        if not members:
            raise DataError(f"{source.name(prefix + name)}: class folder holds no images")
        members.sort()
        other = next((m for m in members if not m.lower().endswith(IMAGE_SUFFIXES)), None)
        if other is not None:
            raise DataError(f"{source.name(other)}: not a PNG or JPEG file by its name (class folders "
                            f"hold {', '.join(IMAGE_SUFFIXES)} files, and hidden files, which are skipped)")
    return classes


def _interleaved(per_class):
    """(members, labels) of per-class member lists, class by class: the first of each, the second, ..."""
    order = sorted((rank, label) for label, members in enumerate(per_class) for rank in range(len(members)))
    members = [per_class[label][rank] for rank, label in order]
    return members, np.array([label for _, label in order], np.int64)


def _held_out_test(per_class, fraction):
    """(train, test) per-class lists: each class's last `fraction` in an order fixed by TEST_SPLIT_SEED."""
    train, test = [], []
    for label, members in enumerate(per_class):
        count = int(fraction * len(members) + 0.5)
        order = np.random.default_rng([TEST_SPLIT_SEED, label]).permutation(len(members))
        cut = len(members) - count
        train.append([members[i] for i in sorted(order[:cut])])
        test.append([members[i] for i in sorted(order[cut:])])
    return train, test


def list_images(source, test_fraction):
    """(class names, (train members, labels), (test members, labels), whether test/ was given)."""
    folders, files = source.tree()
    tops = {folder.split("/")[0] for folder in folders}
    if not tops & set(_SPLIT_FOLDERS):
        classes = _classes(source, folders, files, "")
        names = sorted(classes)
        train, test = _held_out_test([classes[name] for name in names], test_fraction)
        return tuple(names), _interleaved(train), _interleaved(test), False
    missing = next((split for split in _SPLIT_FOLDERS if split not in tops), None)
    if missing:
        raise DataError(f"{source.name(missing)}: no such folder (a folder with "
                        f"{' or '.join(sorted(tops & set(_SPLIT_FOLDERS)))}/ needs train/ and test/)")
    extra = sorted(tops - set(_SPLIT_FOLDERS))
    if extra:
        raise DataError(f"{source.name(extra[0])}: unexpected folder beside train/ and test/")
    train, test = (_classes(source, folders, files, split + "/") for split in _SPLIT_FOLDERS)
    if set(train) != set(test):
        only = sorted(set(train) ^ set(test))
        raise DataError(f"{source.name('test')}: its classes differ from train/'s: "
                        + ", ".join(f"'{c}' only in {'train' if c in train else 'test'}" for c in only))
    names = sorted(train)
    return (tuple(names), _interleaved([train[name] for name in names]),
            _interleaved([test[name] for name in names]), True)


"""Builds the bundled mnist_small subset from the four original MNIST IDX files.

A seeded random selection without replacement (training examples first, then test
examples, from one generator) is kept in its original relative order and written in
the original gzip-compressed IDX format with mtime=0, so the output is byte-reproducible.

    python tools/make_mnist_small.py --source ../shared/data/mnist \
        --out tf_lottery/data_files/mnist_small
"""

import argparse
import gzip
import pathlib
import struct
import sys

import numpy as np

SPLITS = ("train", "t10k")
IMAGES = "{}-images-idx3-ubyte.gz"
LABELS = "{}-labels-idx1-ubyte.gz"
# The subset's own names (train/test, underscores), so it is never mistaken for the full files.
OUT_IMAGES = {"train": "train_images.idx3.gz", "t10k": "test_images.idx3.gz"}
OUT_LABELS = {"train": "train_labels.idx1.gz", "t10k": "test_labels.idx1.gz"}


def read_idx(path):
    """Returns the header bytes and the uint8 payload of one gzip-compressed IDX file."""
    data = gzip.decompress(path.read_bytes())
    if data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        sys.exit(f"{path}: not a uint8 IDX file (magic 0x{data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if payload.size != np.prod(dims):
        sys.exit(f"{path}: expected {int(np.prod(dims))} bytes of data, found {payload.size}")
    return payload.reshape(dims)


def write_idx(path, array):
    """Writes a uint8 array as a gzip-compressed IDX file with a fixed timestamp."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            out.write(header)
            out.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=pathlib.Path, required=True, help="folder with the four original MNIST .gz files"
    )
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output folder")
    parser.add_argument("--train", type=int, default=8000, help="training examples to keep")
    parser.add_argument("--test", type=int, default=2000, help="test examples to keep")
    parser.add_argument("--seed", type=int, default=0, help="seed of numpy.random.default_rng")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    subsets = []
    for split, option, count in zip(SPLITS, ("--train", "--test"), (args.train, args.test)):
        images = read_idx(args.source / IMAGES.format(split))
        labels = read_idx(args.source / LABELS.format(split))
        if len(images) != len(labels):
            sys.exit(f"{split}: {len(images)} images but {len(labels)} labels")
        if not 0 < count <= len(labels):
            sys.exit(f"{option} must be in 1..{len(labels)}, got {count}")
        keep = np.sort(rng.choice(len(labels), size=count, replace=False))
        subsets.append((split, images[keep], labels[keep], len(labels)))

    args.out.mkdir(parents=True, exist_ok=True)
    for split, images, labels, total in subsets:
        write_idx(args.out / OUT_IMAGES[split], images)
        write_idx(args.out / OUT_LABELS[split], labels)
        counts = " ".join(str(c) for c in np.bincount(labels, minlength=10))
        print(f"{split}: kept {len(labels)} of {total}; class counts {counts}")

if __name__ == "__main__":
    main()

"""PNG and JPEG images: their sizes from the headers, and decoding them into uint8 arrays."""

import struct

import numpy as np
from etils import epy

from tf_lottery.data.splits import DataError

with epy.lazy_imports():
    import tensorflow as tf

_CHUNK = 4096  # images read and decoded per tf.data pipeline when loading into memory
_BATCH = 256
_HEADER_BYTES = 16384  # read for the image size; a JPEG whose frame header comes later is read whole
_MORE = "more"  # _header_size: the header continues past the bytes given
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _jpeg_size(data):
    """(height, width) from the first start-of-frame marker, _MORE if data ends first, None if not JPEG."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if position + 9 > len(data):
                return _MORE
            return struct.unpack(">HH", data[position + 5:position + 9])
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return _MORE


def _header_size(data):
    """(height, width) of a PNG or JPEG from its first bytes; _MORE if they end too soon; None if neither."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24:
            return _MORE
        if data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def image_sizes(source, members):
    """(n, 2) array of each image's (height, width), read from its header; DataError naming a bad file.

    An image whose header gives more pixels than `source.limits` allows is
    refused here, before any image is decoded.
    """
    sizes = np.empty((len(members), 2), np.int64)
    for start in range(0, len(members), _CHUNK):
        chunk = members[start:start + _CHUNK]
        for i, (member, head) in enumerate(zip(chunk, source.read(chunk, _HEADER_BYTES))):
            size = _header_size(head)
            if size == _MORE and len(head) == _HEADER_BYTES:
                size = _header_size(source.read([member])[0])
            if size in (None, _MORE) or 0 in size:
                raise DataError(f"{source.name(member)}: not a PNG or JPEG image (unreadable or truncated "
                                "header)")
            source.limits.check_pixels(source.name(member), *size)
            sizes[start + i] = size
    return sizes


def decode_image(encoded, channels=3, size=None):
    """One encoded PNG or JPEG as a uint8 (height, width, channels) tensor.

    With `size`, an image that is not size x size is resized to it
    (bilinear, antialiased, rounded).
    """
    image = tf.cond(tf.io.is_jpeg(encoded),
                    lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE"),
                    lambda: tf.io.decode_png(encoded, channels=channels))
    if size is None:
        return image

    def resized():
        pixels = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)

    same = tf.reduce_all(tf.shape(image)[:2] == size)
    return tf.ensure_shape(tf.cond(same, lambda: image, resized), (size, size, channels))


def _decoder(shape, resize):
    channels = shape[-1]
    return lambda encoded: tf.ensure_shape(decode_image(encoded, channels, resize), shape)


def decode_all(source, members, shape, resize=None):
    """The members decoded in parallel into a uint8 array of `shape` images; DataError names a bad file."""
    images = np.empty((len(members), *shape), np.uint8)
    decode = _decoder(shape, resize)
    for start in range(0, len(members), _CHUNK):
        chunk = members[start:start + _CHUNK]
        encoded = source.read(chunk)
        batches = (tf.data.Dataset.from_tensor_slices(encoded)
                   .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(_BATCH))
        try:
            for i, batch in enumerate(batches.as_numpy_iterator()):
                images[start + i * _BATCH:start + i * _BATCH + len(batch)] = batch
        except tf.errors.OpError:
            for member, content in zip(chunk, encoded):
                try:
                    decode(tf.constant(content))
                except tf.errors.OpError as error:
                    reason = (error.message.strip() or "decode failed").splitlines()[0]
                    raise DataError(f"{source.name(member)}: cannot be decoded ({reason})") from None
            raise
    return images


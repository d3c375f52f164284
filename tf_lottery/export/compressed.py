"""The compressed ticket file: a ticket stored as its masks and surviving weights, for storage and sharing.

`save_ticket(model, path)` writes an .npz (a zip of .npy members, readable by
`np.load`) holding:

  header.npy     the JSON header as bytes: format and version, the precision of
                 the stored values, the stripped model's architecture (its Keras
                 JSON config), and per weight its path, shape, dtype and, for a
                 masked kernel, its mask key, mask encoding and survivor count
  mask_I.npy     weight I's mask: packed bits (np.packbits, one bit a weight) or,
                 when fewer bytes, the gaps between survivors as uint8 codes (a
                 gap of g is g // 255 bytes of 255 then g % 255)
  values_I.npy   weight I's surviving values in row-major order: float32 (the exact
                 ticket), float16, or int8 with scale_I.npy (one float32 scale per
                 output channel, the last axis; symmetric, so a pruned weight is 0)
  weight_I.npy   every other weight (biases, batch norm) as it is

`load_ticket(path)` rebuilds the stripped model (plain Keras layers, exact zeros
where pruned) or, with `wrapped=True`, the wrapped model with its masks. With
float32 values the weights and masks are bit-identical to the saved ticket.
`read_ticket` returns the arrays without building a model. Every size read from
the file is checked against caps and against the header before anything is
allocated; a damaged file is a TicketError of one line naming the file.
"""

import dataclasses
import io
import json
import math
import os
import pathlib
import zipfile

import numpy as np
from etils import epy

with epy.lazy_imports():
    import keras
    from tf_lottery import atomic
    from tf_lottery import model_ops
    from tf_lottery import wrapper

FORMAT = "tf_lottery.ticket"
VERSION = 1
PRECISIONS = ("float32", "float16", "int8")
HEADER = "header"
MAX_FILE_BYTES = 4 << 30      # the whole file
MAX_HEADER_BYTES = 64 << 20   # the JSON header (architecture included)
MAX_MEMBERS = 100_000
MAX_ELEMENTS = 1 << 30        # weights over all tensors
_VALUE_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}


class TicketError(ValueError):
    """A compressed ticket file that cannot be read (or a ticket that cannot be written); one line."""


@dataclasses.dataclass
class Ticket:
    """What a ticket file holds: its header, every weight (dense, pruned positions zero) and the masks."""
    header: dict
    weights: list   # numpy arrays in the order of the model's weights
    masks: dict     # mask key -> float32 0/1 array

    @property
    def precision(self):
        return self.header["precision"]


def _encode_mask(mask):
    """(encoding, bytes) of a 0/1 mask: packed bits or uint8 gap codes, whichever is smaller."""
    flat = mask.ravel().astype(bool)
    positions = np.flatnonzero(flat)
    gaps = np.diff(positions, prepend=-1) - 1
    coded = int(np.sum(gaps // 255)) + len(gaps)
    if coded < math.ceil(flat.size / 8):
        codes = np.concatenate([np.concatenate([np.full(g // 255, 255, np.uint8), [g % 255]])
                                for g in gaps]).astype(np.uint8) if len(gaps) else np.zeros(0, np.uint8)
        return "gaps", codes
    return "bits", np.packbits(flat)


def _decode_mask(encoding, data, shape, count, name):
    size = int(np.prod(shape, dtype=np.int64))
    if encoding == "bits":
        if data.size != math.ceil(size / 8):
            raise TicketError(f"{name} has {data.size} bytes, a mask of {size} weights needs "
                              f"{math.ceil(size / 8)}")
        flat = np.unpackbits(data)[:size].astype(bool)
    elif encoding == "gaps":
        ends = np.flatnonzero(data != 255)
        if len(ends) != count or (len(data) and data[-1] == 255):
            raise TicketError(f"{name} codes {len(ends)} survivors, the header says {count}")
        totals = np.cumsum(data, dtype=np.int64)[ends]
        gaps = np.diff(totals, prepend=0)
        positions = np.cumsum(gaps + 1) - 1
        if len(positions) and positions[-1] >= size:
            raise TicketError(f"{name} places a survivor at {positions[-1]}, past the {size} weights")
        flat = np.zeros(size, bool)
        flat[positions] = True
    else:
        raise TicketError(f"{name}: unknown mask encoding {encoding!r}")
    if int(flat.sum()) != count:
        raise TicketError(f"{name} keeps {int(flat.sum())} weights, the header says {count}")
    return flat.reshape(shape)


def _quantize(values, channels):
    """(int8 values, float32 scale per channel): symmetric, the largest |value| of a channel maps to 127."""
    peak = np.zeros(channels[1], np.float32)
    np.maximum.at(peak, channels[0], np.abs(values))
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    return np.clip(np.round(values / scale[channels[0]]), -127, 127).astype(np.int8), scale


def _variable_of(model, key):
    name, attr = key.rsplit("/", 1)
    for layer in model_ops.inner_layers(model):
        if layer.name == name and wrapper.weight_at(layer, attr) is not None:
            return wrapper.weight_at(layer, attr)
    raise TicketError(f"mask '{key}' names no weight of model '{model.name}'")


def _stripped_and_masks(model, masks):
    if model_ops.wrappers(model):
        if masks is not None:
            raise TicketError("pass masks only with a stripped model; a wrapped model brings its own")
        return model_ops.strip(model), model_ops.get_masks(model)
    if masks is None:
        raise TicketError(f"model '{model.name}' has no LotteryWrapper: pass its masks too")
    return model, {k: np.asarray(v, np.float32) for k, v in masks.items()}


def save_ticket(model, path, masks=None, precision="float32", metadata=None):
    """Writes the ticket of `model` (wrapped, or stripped with its `masks`) to `path`; returns its sizes.

    `precision` is how the surviving values are stored: float32 (exact),
    float16 or int8. The sizes are bytes of the file and of its parts.
    """
    if precision not in PRECISIONS:
        raise TicketError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    stripped, masks = _stripped_and_masks(model, masks)
    by_variable = {id(_variable_of(stripped, key)): key for key in masks}
    arrays, entries = {}, []
    parts = {"masks": 0, "values": 0, "weights": 0}
    for index, variable in enumerate(stripped.weights):
        value = keras.ops.convert_to_numpy(variable)
        entry = {"path": variable.path, "shape": list(value.shape), "dtype": str(value.dtype)}
        key = by_variable.get(id(variable))
        if key is None:
            arrays[f"weight_{index}"] = value
            parts["weights"] += value.nbytes
        else:
            mask = masks[key]
            if mask.shape != value.shape:
                raise TicketError(f"mask '{key}' has shape {mask.shape}, its weight {value.shape}")
            if np.count_nonzero(value[mask == 0]):
                raise TicketError(f"weight '{key}' is nonzero where its mask is 0; save the stripped ticket")
            encoding, code = _encode_mask(mask)
            positions = np.flatnonzero(mask.ravel())
            survivors = value.ravel()[positions]
            if precision == "int8":
                channels = value.shape[-1] if value.ndim else 1
                survivors, scale = _quantize(survivors, (positions % channels, channels))
                arrays[f"scale_{index}"] = scale
                parts["values"] += scale.nbytes
            arrays[f"mask_{index}"] = code
            arrays[f"values_{index}"] = survivors.astype(_VALUE_DTYPES[precision])
            parts["masks"] += code.nbytes
            parts["values"] += arrays[f"values_{index}"].nbytes
            entry.update(mask=key, encoding=encoding, count=int(len(positions)))
        entries.append(entry)
    header = {"format": FORMAT, "version": VERSION, "precision": precision,
              "model": json.loads(stripped.to_json()), "weights": entries, "metadata": metadata or {}}
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    atomic.write_npz(path, arrays)
    size = pathlib.Path(path).stat().st_size
    return {"bytes": size, "uncompressed": {**parts, "header": int(arrays[HEADER].size)},
            "precision": precision, "kernels": len(masks)}


def _member(archive, name, path, limit):
    """The bytes of member `name`.npy, refused before reading if its stated size passes `limit`."""
    try:
        info = archive.getinfo(f"{name}.npy")
    except KeyError:
        raise TicketError(f"{path}: member {name}.npy is missing; the file is damaged") from None
    if info.file_size > limit:
        raise TicketError(f"{path}: member {name}.npy says {info.file_size} bytes, more than the "
                          f"{limit} it can hold")
    return archive.read(info)


def _array(archive, name, path, dtype, shape, limit=None):
    """Member `name` as an array of `dtype` and `shape` (None: any 1-D length up to `limit` items)."""
    itemsize = np.dtype(dtype).itemsize
    expected = None if shape is None else int(np.prod(shape, dtype=np.int64))
    room = (expected if expected is not None else limit) * itemsize + 4096
    stream = io.BytesIO(_member(archive, name, path, room))
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        got_shape, fortran, got_dtype = read_header(stream)
    except ValueError as error:
        raise TicketError(f"{path}: member {name}.npy is not an array ({error})") from None
    if got_dtype != np.dtype(dtype) or fortran or (shape is not None and list(got_shape) != list(shape)) \
            or (shape is None and len(got_shape) != 1):
        raise TicketError(f"{path}: member {name}.npy is {got_dtype}{list(got_shape)}, expected "
                          f"{np.dtype(dtype)}{list(shape) if shape is not None else '[n]'}")
    data = stream.read()
    count = int(np.prod(got_shape, dtype=np.int64))
    if len(data) != count * itemsize:
        raise TicketError(f"{path}: member {name}.npy holds {len(data)} bytes of data, not {count * itemsize}")
    return np.frombuffer(data, dtype).reshape(got_shape).copy()


def _check_header(header, path):
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TicketError(f"{path}: not a tf_lottery ticket file")
    if header.get("version") != VERSION:
        raise TicketError(f"{path}: ticket format version {header.get('version')!r}; this tf_lottery "
                          f"reads version {VERSION}")
    if header.get("precision") not in PRECISIONS or not isinstance(header.get("weights"), list):
        raise TicketError(f"{path}: the header is damaged (precision or weights)")
    total = 0
    for entry in header["weights"]:
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d <= MAX_ELEMENTS for d in shape):
            raise TicketError(f"{path}: the header is damaged (a weight without a valid shape)")
        size = int(np.prod(shape, dtype=np.int64))
        total += size
        if total > MAX_ELEMENTS:
            raise TicketError(f"{path}: the header declares more than the {MAX_ELEMENTS} weights a ticket "
                              "file may hold; the file is damaged")
        if entry.get("dtype") not in ("float32", "float16", "float64"):
            raise TicketError(f"{path}: the header is damaged (a weight of dtype {entry.get('dtype')!r})")
        if "mask" in entry and not (isinstance(entry.get("count"), int) and 0 <= entry["count"] <= size):
            raise TicketError(f"{path}: the header is damaged (survivor count of '{entry.get('mask')}')")


def read_ticket(path):
    """The Ticket in file `path` (numpy arrays only, no model); TicketError naming the file if damaged."""
    path = pathlib.Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise TicketError(f"{path}: cannot read ({error.strerror or error})") from None
    if size > MAX_FILE_BYTES:
        raise TicketError(f"{path}: {size} bytes, more than a ticket file may have ({MAX_FILE_BYTES})")
    try:
        with zipfile.ZipFile(path) as archive:
            if len(archive.infolist()) > MAX_MEMBERS:
                raise TicketError(f"{path}: more than {MAX_MEMBERS} members; not a ticket file")
            try:
                header = json.loads(_array(archive, HEADER, path, np.uint8, None, MAX_HEADER_BYTES).tobytes())
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise TicketError(f"{path}: the header is not JSON; the file is damaged") from None
            _check_header(header, path)
            return _read_weights(archive, header, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise TicketError(f"{path}: not a readable ticket file ({type(error).__name__}: {error})") from None
    except (zipfile.error, ValueError) as error:
        if isinstance(error, TicketError):
            raise
        raise TicketError(f"{path}: damaged ({type(error).__name__}: {error})") from None


def _read_weights(archive, header, path):
    weights, masks = [], {}
    precision = header["precision"]
    for index, entry in enumerate(header["weights"]):
        shape, dtype = entry["shape"], np.dtype(entry["dtype"])
        if "mask" not in entry:
            weights.append(_array(archive, f"weight_{index}", path, dtype, shape))
            continue
        count, size = entry["count"], int(np.prod(shape, dtype=np.int64))
        limit = math.ceil(size / 8) if entry.get("encoding") == "bits" else count + size // 255 + 1
        code = _array(archive, f"mask_{index}", path, np.uint8, None, limit)
        mask = _decode_mask(entry.get("encoding"), code, shape, count, f"{path}: mask of '{entry['mask']}'")
        values = _array(archive, f"values_{index}", path, _VALUE_DTYPES[precision], [count])
        if precision == "int8":
            channels = shape[-1] if shape else 1
            scale = _array(archive, f"scale_{index}", path, np.float32, [channels])
            values = values.astype(np.float32) * scale[np.flatnonzero(mask.ravel()) % channels]
        weight = np.zeros(size, dtype)
        weight[np.flatnonzero(mask.ravel())] = values.astype(dtype)
        weights.append(weight.reshape(shape))
        masks[entry["mask"]] = mask.astype(np.float32)
    return Ticket(header, weights, masks)


def load_ticket(path, wrapped=False):
    """The ticket in `path` as a Keras model: stripped (plain layers), or wrapped with its masks set.

    The architecture is rebuilt from the header (custom layers must be
    registered with Keras, as for a .keras file).
    """
    ticket = read_ticket(path)
    try:
        model = keras.models.model_from_json(json.dumps(ticket.header["model"]))
    except Exception as error:  # Keras raises many kinds for a config it cannot rebuild
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TicketError(f"{path}: cannot rebuild the architecture ({first})") from None
    entries = ticket.header["weights"]
    if len(model.weights) != len(entries) or any(
            list(v.shape) != e["shape"] for v, e in zip(model.weights, entries)):
        raise TicketError(f"{path}: the rebuilt model's weights do not match the header's "
                          f"({len(model.weights)} against {len(entries)})")
    for variable, value in zip(model.weights, ticket.weights):
        variable.assign(value)
    if not wrapped:
        return model
    prunable = {}
    for key in ticket.masks:
        name, attr = key.rsplit("/", 1)
        prunable.setdefault(name, []).append(attr)
    others = [layer.name for layer in model_ops.inner_layers(model)
              if layer.name not in prunable and not isinstance(layer, keras.Model)]
    wrapped_model = model_ops.wrap(model, exclude=others, prunable=prunable)
    model_ops.set_masks(wrapped_model, ticket.masks)
    return wrapped_model

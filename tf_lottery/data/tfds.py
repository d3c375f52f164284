"""TFDS as a source: whole datasets as arrays when no local files are found, prepared splits as streams."""

from etils import epy

from tf_lottery.data.splits import DataError, InMemoryDataset, existing_folder

with epy.lazy_imports():
    import tensorflow_datasets as tfds


def load_arrays(name, data_dir, local_files) -> tuple:
    """train_x, train_y, test_x, test_y of TFDS dataset `name` from the prepared folder data_dir.

    With data_dir None, from TFDS's default folder, downloading if needed.
    `local_files` names what data_dir was searched for, for the error message.
    """
    if data_dir is None:
        kwargs = {}
    else:
        kwargs = {"data_dir": str(data_dir), "download": False}
    try:
        (train, test) = tfds.as_numpy(
            tfds.load(name, batch_size=-1, as_supervised=True, split=["train", "test"], **kwargs)
        )
    except AssertionError as error:
        # TFDS raises AssertionError when download=False and the data is not prepared.
        raise DataError(
            f"dataset '{name}': {data_dir} holds neither {local_files} "
            f"nor prepared TFDS data ({error})"
        ) from error
    except Exception as error:  # a failed download can raise almost anything
        if data_dir is not None:
            raise
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise DataError(
            f"dataset '{name}': TFDS could not load or download it ({type(error).__name__}: "
            f"{first_line}); without network access pass --data_dir with local files"
        ) from error
    return train[0], train[1], test[0], test[1]


def read_encoded(name, data_dir, split, shuffle_seed=None):
    """One split of the prepared TFDS `name` in data_dir as (encoded image, label); never downloads.

    With `shuffle_seed`, the files are read in an order fixed by it.
    """
    kwargs = {}
    if shuffle_seed is not None:
        kwargs = {"shuffle_files": True, "read_config": tfds.ReadConfig(shuffle_seed=shuffle_seed)}
    try:
        return tfds.load(name, split=split, data_dir=str(data_dir), download=False,
                         as_supervised=True, decoders={"image": tfds.decode.SkipDecoding()}, **kwargs)
    except AssertionError as error:
        # TFDS raises AssertionError when download=False and the data is not prepared.
        raise DataError(f"dataset '{name}': {data_dir} holds no prepared TFDS data "
                        f"({error})") from error


class LocalOrTfds(InMemoryDataset):
    """A dataset read from its original files in data_dir, else from TFDS (prepared there, or downloaded)."""

    local_files: str  # what read_local looks for, named when data_dir holds neither

    @classmethod
    def read(cls, data_dir) -> tuple:
        if data_dir is None:
            return load_arrays(cls.name, None, cls.local_files)
        data_dir = existing_folder(cls.name, data_dir)
        return cls.read_local(data_dir) or load_arrays(cls.name, data_dir, cls.local_files)

    @classmethod
    def read_local(cls, data_dir):
        """The arrays from the original files in the folder data_dir, or None if it has none."""
        raise NotImplementedError

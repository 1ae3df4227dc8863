"""MATLAB .mat files, v7 (``scipy.io.loadmat``) and v7.3 (HDF5), as plain Python values.

One variable is read into a neutral tree, the same for both formats:

- numeric and logical arrays: ``np.ndarray`` with MATLAB's dimensions (at least 2-D) and
  indexing, ``a[i, j]`` being MATLAB's ``a(i + 1, j + 1)``; the dtype of the MATLAB class
  (``single`` -> float32, ``double`` -> float64, ``logical`` -> bool, ...);
- char vectors: ``str`` (a row, or a column; an empty char array is ``""``);
- cell arrays: :class:`MatCell`; struct arrays, a 1 x 1 struct included: :class:`MatStruct`;
- anything else (function handles, objects, sparse matrices, char matrices of several rows and
  columns):
  :class:`MatUnsupported`, so that a file with such fields still loads and only a reader that
  needs one of them fails.

MATLAB's v7.3 conventions, as read here: each variable is a dataset or group at the root with
a ``MATLAB_class`` attribute; dimensions are stored reversed; chars are uint16 (UTF-16 code
units); an empty array is stored as the vector of its dimensions with ``MATLAB_empty`` = 1; a
cell is a dataset of object references into ``/#refs#``; a 1 x 1 struct is a group of its
fields; a struct array is a group whose fields are reference datasets without a
``MATLAB_class``, one reference per element.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import h5py
import numpy as np
import scipy.io
import scipy.io.matlab

from app.model.release.errors import ReleaseFormatError

_NUMERIC_CLASSES = {
    "double": np.float64,
    "single": np.float32,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "logical": np.bool_,
}


@dataclass(frozen=True)
class MatCell:
    """A MATLAB cell array: its dimensions and its elements in MATLAB's column-major order."""

    shape: tuple[int, ...]
    elements: tuple[MatValue, ...]


@dataclass(frozen=True)
class MatStruct:
    """A MATLAB struct array (1 x 1 for a plain struct): field names and one dict per element.

    ``elements`` are in MATLAB's column-major order, each ``{field name: value}``.
    """

    shape: tuple[int, ...]
    fields: tuple[str, ...]
    elements: tuple[dict[str, MatValue], ...]


@dataclass(frozen=True)
class MatUnsupported:
    """A value this reader does not convert, named by its MATLAB class."""

    matlab_class: str


MatValue = Union[np.ndarray, str, MatCell, MatStruct, MatUnsupported]  # noqa: UP007


def describe(value: MatValue) -> str:
    """A short description for error messages, e.g. ``"a 20x4096 single"``, ``"a 1x1 struct"``."""
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, MatUnsupported):
        return f"a {value.matlab_class} (not readable here)"
    if isinstance(value, MatCell):
        return f"a {'x'.join(map(str, value.shape))} cell"
    if isinstance(value, MatStruct):
        return f"a {'x'.join(map(str, value.shape))} struct with fields {list(value.fields)}"
    klass = {np.dtype(v): k for k, v in _NUMERIC_CLASSES.items()}.get(value.dtype, str(value.dtype))
    return f"a {'x'.join(map(str, value.shape))} {klass}"


# ---------------------------------------------------------------- v7 (scipy) -------------------


def _chars_to_str(chars: np.ndarray) -> MatValue:
    """A char vector (1 x N, or N x 1) as text; a char matrix is not converted."""
    if chars.size == 0:
        return ""
    if chars.ndim > 2 or min(chars.shape) != 1:
        return MatUnsupported(f"{'x'.join(map(str, chars.shape))} char matrix")
    return "".join(str(c) for c in chars.reshape(-1))


def _from_scipy(value: Any, where: str) -> MatValue:
    """Convert what ``loadmat(struct_as_record=True, chars_as_strings=False)`` returns."""
    if isinstance(value, scipy.io.matlab.MatlabFunction):
        return MatUnsupported("function_handle")
    if isinstance(value, scipy.io.matlab.MatlabOpaque | scipy.io.matlab.MatlabObject):
        return MatUnsupported("object")
    if isinstance(value, str):
        return value
    if not isinstance(value, np.ndarray):
        return MatUnsupported(type(value).__name__)
    if value.dtype.names is not None:
        flat = value.flatten(order="F")
        fields = tuple(value.dtype.names)
        elements = tuple({f: _from_scipy(item[f], f"{where}.{f}") for f in fields} for item in flat)
        return MatStruct(shape=tuple(value.shape), fields=fields, elements=elements)
    if value.dtype == object:
        flat = value.flatten(order="F")
        return MatCell(
            shape=tuple(value.shape),
            elements=tuple(_from_scipy(v, f"{where}{{{i + 1}}}") for i, v in enumerate(flat)),
        )
    if value.dtype.kind == "U":
        return _chars_to_str(value)
    if value.dtype.kind in "biufc":
        return value
    return MatUnsupported(str(value.dtype))


def _load_v7(path: Path, name: str) -> MatValue:
    try:
        loaded = scipy.io.loadmat(
            path,
            variable_names=[name],
            squeeze_me=False,
            struct_as_record=True,
            chars_as_strings=False,
            mat_dtype=True,
        )
    except Exception as err:  # scipy raises many kinds (ValueError, TypeError, zlib.error...)
        raise ReleaseFormatError(
            f"{path}: expected a MATLAB .mat file (v7 or v7.3), found one that cannot be read "
            f"({type(err).__name__}: {err}); truncated or damaged?"
        ) from err
    if name not in loaded:
        found = sorted(entry[0] for entry in scipy.io.whosmat(path))
        raise ReleaseFormatError(
            f"{path}: expected a variable {name!r}, found {found or 'no variables'}"
        )
    return _from_scipy(loaded[name], name)


# ---------------------------------------------------------------- v7.3 (HDF5) -------------------


def _attr_text(node: h5py.HLObject, key: str) -> str | None:
    value = node.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bytes | np.bytes_):
        return value.decode("ascii", "replace")
    return str(value)


def _h5_chars(codes: np.ndarray) -> MatValue:
    """MATLAB chars, stored as uint16 UTF-16 code units with reversed dimensions."""
    if codes.size == 0:
        return ""
    if codes.ndim > 2 or min(codes.shape) != 1:
        return MatUnsupported(f"{'x'.join(map(str, codes.shape[::-1]))} char matrix")
    return codes.astype("<u2").reshape(-1).tobytes().decode("utf-16-le", errors="replace")


def _h5_empty(node: h5py.Dataset, klass: str | None) -> MatValue:
    """An empty MATLAB value: the dataset holds its dimensions (MATLAB order)."""
    dims = tuple(int(d) for d in np.asarray(node[()]).reshape(-1))
    if klass == "char":
        return ""
    if klass == "cell":
        return MatCell(shape=dims, elements=())
    if klass == "struct":
        return MatStruct(shape=dims, fields=_h5_field_order(node, []), elements=())
    dtype = _NUMERIC_CLASSES.get(klass or "double")
    if dtype is None:
        return MatUnsupported(klass or "unknown")
    return np.zeros(dims, dtype=dtype)


def _h5_field_order(node: h5py.HLObject, children: list[str]) -> tuple[str, ...]:
    """Field names from ``MATLAB_fields`` (vlen arrays of single chars), else child order."""
    raw = node.attrs.get("MATLAB_fields")
    if raw is None:
        return tuple(children)
    names = []
    for entry in raw:
        names.append(b"".join(np.asarray(entry, dtype="S1").tolist()).decode("ascii"))
    return tuple(names)


class _H5Reader:
    """Reads one MATLAB variable from an open v7.3 file, following object references."""

    def __init__(self, file: h5py.File, path: Path) -> None:
        self.file, self.path = file, path

    def deref(self, ref: Any, where: str) -> MatValue:
        if not ref:
            raise ReleaseFormatError(
                f"{self.path}: {where}: expected a value, found a null reference"
            )
        try:
            target = self.file[ref]
        except (KeyError, ValueError, OSError) as err:
            raise ReleaseFormatError(
                f"{self.path}: {where}: expected a value in #refs#, found a broken reference"
            ) from err
        return self.read(target, where)

    def read(self, node: h5py.HLObject, where: str) -> MatValue:
        klass = _attr_text(node, "MATLAB_class")
        if isinstance(node, h5py.Group):
            if klass not in (None, "struct"):
                return MatUnsupported(klass)
            return self.read_struct(node, where)
        assert isinstance(node, h5py.Dataset)
        if node.attrs.get("MATLAB_empty", 0):
            return _h5_empty(node, klass)
        if klass == "cell":
            refs = np.asarray(node[()], dtype=object)
            flat = refs.reshape(-1)  # C order of reversed dims = MATLAB's column-major order
            elements = tuple(self.deref(r, f"{where}{{{i + 1}}}") for i, r in enumerate(flat))
            return MatCell(shape=tuple(reversed(refs.shape)), elements=elements)
        if klass == "char":
            return _h5_chars(np.asarray(node[()]))
        if klass in _NUMERIC_CLASSES:
            data = np.asarray(node[()])
            if data.dtype.names and {"real", "imag"} <= set(data.dtype.names):
                data = data["real"] + 1j * data["imag"]
            data = data.astype(_NUMERIC_CLASSES[klass], copy=False)
            return data.reshape((1, 1)) if data.ndim == 0 else data.T
        return MatUnsupported(klass or f"HDF5 dataset of {node.dtype}")

    def read_struct(self, group: h5py.Group, where: str) -> MatStruct:
        children = [k for k in group if not k.startswith("#")]
        fields = _h5_field_order(group, children)
        missing = [f for f in fields if f not in group]
        if missing:
            raise ReleaseFormatError(
                f"{self.path}: {where}: expected fields {list(fields)}, found {children}"
            )
        is_array = any(
            isinstance(group[f], h5py.Dataset)
            and h5py.check_dtype(ref=group[f].dtype) is h5py.Reference
            and "MATLAB_class" not in group[f].attrs
            for f in fields
        )
        if not is_array:
            element = {f: self.read(group[f], f"{where}.{f}") for f in fields}
            return MatStruct(shape=(1, 1), fields=fields, elements=(element,))
        refs = {f: np.asarray(group[f][()], dtype=object) for f in fields}
        shapes = {f: r.shape for f, r in refs.items()}
        if len(set(shapes.values())) != 1:
            raise ReleaseFormatError(
                f"{self.path}: {where}: expected struct array fields of one size, found {shapes}"
            )
        shape = next(iter(shapes.values()))
        count = int(np.prod(shape))
        elements = tuple(
            {f: self.deref(refs[f].reshape(-1)[i], f"{where}({i + 1}).{f}") for f in fields}
            for i in range(count)
        )
        return MatStruct(shape=tuple(reversed(shape)), fields=fields, elements=elements)


def _load_v73(path: Path, name: str) -> MatValue:
    try:
        with h5py.File(path, "r") as file:
            if name not in file:
                found = sorted(k for k in file if not k.startswith("#"))
                raise ReleaseFormatError(
                    f"{path}: expected a variable {name!r}, found {found or 'no variables'}"
                )
            return _H5Reader(file, path).read(file[name], name)
    except ReleaseFormatError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ReleaseFormatError(
            f"{path}: expected a MATLAB v7.3 (HDF5) .mat file, found one that cannot be read "
            f"({type(err).__name__}: {err}); truncated or damaged?"
        ) from err


def load_mat_variable(path: str | Path, name: str) -> MatValue:
    """One variable of a .mat file, v7 or v7.3 (told apart by the HDF5 signature).

    Raises:
        ReleaseFormatError: not a .mat file, truncated or damaged, or no variable ``name``.
        OSError: the file cannot be opened.
    """
    path = Path(path)
    with path.open("rb"):
        pass  # a missing or unreadable file is an OSError, not a format error
    if h5py.is_hdf5(path):
        return _load_v73(path, name)
    return _load_v7(path, name)

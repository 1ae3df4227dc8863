"""Test writers of MATLAB .mat files: v7 (scipy), v7.3 (h5py by hand), v7.3 (hdf5storage).

Values are given in the readers' neutral form (``np.ndarray`` with MATLAB dimensions, ``str``,
:class:`MatCell`, :class:`MatStruct`), plus ``FunctionHandle()`` for a field MATLAB would hold a
function handle in (``spp_pooler.expected_scale``), written only in the v7.3 layout.

The hand-written v7.3 writer follows MATLAB's conventions as its files show them: a 512-byte
user block starting with the MATLAB text header; ``MATLAB_class`` on every variable; dimensions
reversed; chars as uint16 with ``MATLAB_int_decode`` 2; empties as the uint64 vector of their
dimensions with ``MATLAB_empty`` 1; cells as object references into ``/#refs#``; 1 x 1 structs as
groups with ``MATLAB_fields``; struct arrays as groups of reference datasets without a class.
hdf5storage is a second, independent implementation of the same conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from app.model.release.matlab import MatCell, MatStruct


@dataclass(frozen=True)
class FunctionHandle:
    """A placeholder for a MATLAB function handle (``@spm_expected_scale``)."""

    name: str = "spm_expected_scale"


_CLASS_OF_DTYPE = {
    np.dtype(np.float64): "double",
    np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "logical",
}


def _column_major_array(shape: tuple[int, ...], items: list[Any], dtype: Any) -> np.ndarray:
    flat = np.empty(len(items), dtype=dtype)
    for i, item in enumerate(items):
        flat[i] = item
    return flat.reshape(shape, order="F")


# ------------------------------------------------------------------ v7 -----------------------


def _to_scipy(value: Any) -> Any:
    if isinstance(value, MatStruct):
        dtype = [(f, object) for f in value.fields]
        items = [tuple(_to_scipy(e[f]) for f in value.fields) for e in value.elements]
        return _column_major_array(value.shape, items, dtype)
    if isinstance(value, MatCell):
        return _column_major_array(value.shape, [_to_scipy(v) for v in value.elements], object)
    if isinstance(value, FunctionHandle):
        raise TypeError("scipy cannot write function handles; leave them out of v7 files")
    return value


def write_mat_v7(path: Path, variables: dict[str, Any]) -> None:
    """A MATLAB v7 (level 5, compressed) file."""
    scipy.io.savemat(path, {k: _to_scipy(v) for k, v in variables.items()}, do_compression=True)


# ------------------------------------------------------------------ v7.3 by hand -------------


class _Mat73Writer:
    def __init__(self, file: h5py.File) -> None:
        self.file = file
        self.refs = file.create_group("#refs#")
        self.names = count()

    def ref(self, value: Any) -> Any:
        name = f"r{next(self.names)}"
        self.write(self.refs, name, value)
        return self.refs[name].ref

    def write(self, group: h5py.Group, name: str, value: Any) -> None:
        if isinstance(value, MatStruct):
            self.write_struct(group, name, value)
        elif isinstance(value, MatCell):
            if not value.elements:
                self.write_empty(group, name, value.shape, "cell")
                return
            refs = _column_major_array(value.shape, [self.ref(v) for v in value.elements], object)
            ds = group.create_dataset(name, data=refs.T, dtype=h5py.ref_dtype)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
        elif isinstance(value, str):
            if not value:
                self.write_empty(group, name, (0, 0), "char")
                return
            codes = np.frombuffer(value.encode("utf-16-le"), dtype="<u2").reshape(1, -1)
            ds = group.create_dataset(name, data=codes.T)
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
        elif isinstance(value, FunctionHandle):
            sub = group.create_group(name)
            sub.attrs["MATLAB_class"] = np.bytes_("function_handle")
            self.write(sub, "function_handle", value.name)
        else:
            array = np.asarray(value)
            array = array.reshape(1, 1) if array.ndim == 0 else array
            klass = _CLASS_OF_DTYPE[array.dtype]
            if array.size == 0:
                self.write_empty(group, name, array.shape, klass)
                return
            data = array.astype(np.uint8) if klass == "logical" else array
            ds = group.create_dataset(name, data=data.T)
            ds.attrs["MATLAB_class"] = np.bytes_(klass)
            if klass == "logical":
                ds.attrs["MATLAB_int_decode"] = np.int32(1)

    def write_empty(self, group: h5py.Group, name: str, shape: tuple[int, ...], klass: str) -> None:
        ds = group.create_dataset(name, data=np.array(shape, dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_(klass)
        ds.attrs["MATLAB_empty"] = np.uint8(1)

    def write_struct(self, group: h5py.Group, name: str, value: MatStruct) -> None:
        sub = group.create_group(name)
        sub.attrs["MATLAB_class"] = np.bytes_("struct")
        vlen = h5py.vlen_dtype(np.dtype("S1"))
        fields = np.empty(len(value.fields), dtype=vlen)
        for i, f in enumerate(value.fields):
            fields[i] = np.array([c.encode("ascii") for c in f], dtype="S1")
        sub.attrs.create("MATLAB_fields", fields, dtype=vlen)
        if value.shape == (1, 1):
            for f in value.fields:
                self.write(sub, f, value.elements[0][f])
            return
        for f in value.fields:
            refs = [self.ref(e[f]) for e in value.elements]
            sub.create_dataset(
                f, data=_column_major_array(value.shape, refs, object).T, dtype=h5py.ref_dtype
            )


def _matlab_header() -> bytes:
    text = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, "
        b"Created on: Mon Jan  1 00:00:00 2015 HDF5 schema 1.00 ."
    )
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


def write_mat_v73(path: Path, variables: dict[str, Any]) -> None:
    """A MATLAB v7.3 file laid out by hand with h5py (see the module docstring)."""
    with h5py.File(path, "w", userblock_size=512) as file:
        writer = _Mat73Writer(file)
        for name, value in variables.items():
            writer.write(file, name, value)
    with path.open("r+b") as raw:
        raw.write(_matlab_header())


# ------------------------------------------------------------------ v7.3 by hdf5storage -------


def _to_hdf5storage(value: Any) -> Any:
    if isinstance(value, MatStruct):
        if value.shape == (1, 1):
            return {f: _to_hdf5storage(value.elements[0][f]) for f in value.fields}
        dtype = [(f, object) for f in value.fields]
        items = [tuple(_to_hdf5storage(e[f]) for f in value.fields) for e in value.elements]
        return _column_major_array(value.shape, items, dtype)
    if isinstance(value, MatCell):
        return _column_major_array(
            value.shape, [_to_hdf5storage(v) for v in value.elements], object
        )
    if isinstance(value, FunctionHandle):
        raise TypeError("hdf5storage cannot write function handles")
    if isinstance(value, str):
        return np.str_(value)
    return value


def write_mat_v73_hdf5storage(path: Path, variables: dict[str, Any]) -> None:
    """A MATLAB v7.3 file written by hdf5storage in its MATLAB-compatible mode."""
    import hdf5storage

    hdf5storage.savemat(
        str(path),
        {k: _to_hdf5storage(v) for k, v in variables.items()},
        format="7.3",
        oned_as="row",
        store_python_metadata=False,
        structured_numpy_ndarray_as_struct=True,
    )

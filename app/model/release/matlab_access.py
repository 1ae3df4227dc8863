"""Typed access to a MATLAB value tree (see :mod:`app.model.release.matlab`), with clear errors.

Every accessor takes the MATLAB path of the value (``"spp_model.detectors.W"``) and raises
:class:`ReleaseFormatError` naming the file, that path, what was expected and what was found.
"""

from __future__ import annotations

import math

import numpy as np

from app.model.release.errors import ReleaseFormatError
from app.model.release.matlab import MatCell, MatStruct, MatValue, describe


class MatAccess:
    """Accessors bound to one source file, for its error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, value: MatValue | None) -> ReleaseFormatError:
        found = "nothing" if value is None else describe(value)
        return ReleaseFormatError(f"{self.source}: {where}: expected {expected}, found {found}")

    def elements(self, value: MatValue, where: str) -> tuple[dict[str, MatValue], ...]:
        """All elements of a struct array, in MATLAB's column-major order."""
        if not isinstance(value, MatStruct):
            raise self.fail(where, "a struct", value)
        return value.elements

    def struct(self, value: MatValue, where: str) -> dict[str, MatValue]:
        """The one element of a 1 x 1 struct."""
        elements = self.elements(value, where)
        if len(elements) != 1:
            raise self.fail(where, "a 1x1 struct", value)
        return elements[0]

    def field(self, value: MatValue, name: str, where: str) -> MatValue:
        """``value.name`` of a 1 x 1 struct; the field must exist."""
        element = self.struct(value, where)
        if name not in element:
            raise ReleaseFormatError(
                f"{self.source}: {where}: expected a field {name!r}, found fields {sorted(element)}"
            )
        return element[name]

    def at(self, root: MatValue, path: str) -> tuple[MatValue, str]:
        """``(value, path)`` at a dotted path through 1 x 1 structs, e.g. ``"spp_model.cnn"``.

        The first name is the root's own; pass the pair on to a typed accessor:
        ``access.integer(*access.at(root, "spp_model.training_opts.layer"))``.
        """
        names = path.split(".")
        value, where = root, names[0]
        for name in names[1:]:
            value = self.field(value, name, where)
            where = f"{where}.{name}"
        return value, where

    def numeric(self, value: MatValue, where: str) -> np.ndarray:
        """A real numeric or logical array, finite."""
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            raise self.fail(where, "a real numeric array", value)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self.fail(where, "finite numbers", value)
        return value

    def number(self, value: MatValue, where: str) -> float:
        """A scalar (a 1 x 1 array)."""
        array = self.numeric(value, where) if isinstance(value, np.ndarray) else None
        if array is None or array.size != 1:
            raise self.fail(where, "a number", value)
        return float(array.reshape(-1)[0])

    def positive(self, value: MatValue, where: str) -> float:
        """A scalar greater than zero (a norm, a stride)."""
        number = self.number(value, where)
        if number <= 0:
            raise ReleaseFormatError(
                f"{self.source}: {where}: expected a positive number, found {number!r}"
            )
        return number

    def integer(self, value: MatValue, where: str) -> int:
        """A scalar with an integral value (MATLAB stores most integers as double)."""
        number = self.number(value, where)
        if number != math.floor(number):
            raise ReleaseFormatError(
                f"{self.source}: {where}: expected an integer, found {number!r}"
            )
        return int(number)

    def matrix(
        self, value: MatValue, where: str, shape: tuple[int | None, int | None]
    ) -> np.ndarray:
        """A 2-D array; ``None`` in ``shape`` accepts any size on that side."""
        array = self.numeric(value, where) if isinstance(value, np.ndarray) else None
        if array is not None and array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        ok = (
            array is not None
            and array.ndim == 2
            and all(
                want is None or want == got for want, got in zip(shape, array.shape, strict=True)
            )
        )
        if not ok:
            wanted = "x".join("N" if s is None else str(s) for s in shape)
            raise self.fail(where, f"a {wanted} matrix", value)
        assert array is not None
        return array

    def vector(self, value: MatValue, where: str, length: int | None = None) -> np.ndarray:
        """A row or column vector (1 x N or N x 1) as a 1-D array."""
        array = self.numeric(value, where) if isinstance(value, np.ndarray) else None
        if array is not None and array.ndim == 2 and min(array.shape) <= 1:
            flat = array.reshape(-1)
            if length is None or flat.size == length:
                return flat
        wanted = "a vector" if length is None else f"a vector of {length} values"
        raise self.fail(where, wanted, value)

    def text(self, value: MatValue, where: str) -> str:
        """A char row."""
        if not isinstance(value, str):
            raise self.fail(where, "a char array", value)
        return value

    def texts(self, value: MatValue, where: str) -> tuple[str, ...]:
        """A cell vector of char rows, in order."""
        if not isinstance(value, MatCell) or (value.elements and min(value.shape) != 1):
            raise self.fail(where, "a cell vector of names", value)
        return tuple(self.text(v, f"{where}{{{i + 1}}}") for i, v in enumerate(value.elements))

    def cell(self, value: MatValue, where: str) -> MatCell:
        """A cell array of any shape."""
        if not isinstance(value, MatCell):
            raise self.fail(where, "a cell array", value)
        return value

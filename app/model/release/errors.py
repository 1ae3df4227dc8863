"""The one exception the release readers raise for a file they cannot use."""

from __future__ import annotations


class ReleaseFormatError(ValueError):
    """A release file is unreadable, truncated, of the wrong kind, or holds mismatched shapes.

    The message names the file (or the MATLAB path inside it), what was expected and what was
    found, e.g. ``"spp_model.mat: spp_model.detectors.W: expected a [20, 4096] matrix, found
    [20, 4095]"``.
    """

"""Checks across the release files: do the trunk, spp_model and the box regressor fit together?"""

from __future__ import annotations

from app.model.release.bbox_regressor import BboxRegressor
from app.model.release.conv_trunk import ReleaseConvTrunk
from app.model.release.errors import ReleaseFormatError
from app.model.release.spp_model import SppReleaseModel, fc_feature_dim


def conv5_channels(model: SppReleaseModel) -> int:
    """Channels of conv5 implied by fc6's input: ``pooled_dim / sum(n * n)``.

    Raises:
        ReleaseFormatError: fc6's input is not a whole number of pyramids.
    """
    bins = model.pooler.bins
    if model.pooled_dim % bins:
        raise ReleaseFormatError(
            f"spp_model: expected fc6 inputs = conv5 channels x {bins} bins "
            f"(spm_divs {list(model.pooler.spm_divs)}), found {model.pooled_dim} inputs"
        )
    return model.pooled_dim // bins


def check_release_consistency(
    model: SppReleaseModel,
    trunk: ReleaseConvTrunk | None = None,
    regressor: BboxRegressor | None = None,
) -> None:
    """Raise :class:`ReleaseFormatError` if the given release parts do not fit together.

    Checked: fc6's input is conv5 channels x pyramid bins (with the trunk's conv5 channels when
    given); the regressor has one model per class and reads features of the length of its
    ``training_opts.layer``.
    """
    channels = conv5_channels(model)
    if trunk is not None and trunk.out_channels != channels:
        raise ReleaseFormatError(
            f"expected conv5 of the Caffe file to have {channels} channels "
            f"(spp_model's fc6 takes {model.pooled_dim} = {channels} x {model.pooler.bins}), "
            f"found {trunk.out_channels}"
        )
    if regressor is None:
        return
    if len(regressor.models) != len(model.classes):
        raise ReleaseFormatError(
            f"expected one box regressor per class ({len(model.classes)}), "
            f"found {len(regressor.models)}"
        )
    dim = fc_feature_dim(
        model.fc_layers,
        model.first_fc_index,
        regressor.feature_layer,
        what="bbox_reg.training_opts.layer",
    )
    if regressor.feature_dim != dim:
        raise ReleaseFormatError(
            f"expected box regressors on layer {regressor.feature_layer} features of length "
            f"{dim} (Beta of {dim + 1} rows), found Beta of {regressor.feature_dim + 1} rows"
        )

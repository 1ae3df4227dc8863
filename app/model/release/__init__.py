"""Readers of the SPP_net release's files (ShaoqingRen/SPP_net): Caffe weights and .mat models.

- :func:`read_caffe_blobs` / :func:`read_release_conv_trunk`: ``Zeiler_conv5`` (binary Caffe,
  any of its three layouts) -> conv1..conv5 weights;
- :func:`read_spp_model`: ``spp_model.mat`` (v7 or v7.3) -> fc layers, pooler, SVMs, classes;
- :func:`read_bbox_regressor`: ``bbox_regressor_final.mat`` -> per-class box regressors;
- :func:`check_release_consistency`: the three fit together;
- :func:`import_spp_net_release` (``importer``): all of them -> a model of the store.

Every unusable file raises :class:`ReleaseFormatError`. Only ``importer`` builds a torch model.
"""

from app.model.release.bbox_regressor import BboxRegressor, ClassBoxRegressor, read_bbox_regressor
from app.model.release.caffe import parse_caffe_blobs, read_caffe_blobs
from app.model.release.consistency import check_release_consistency, conv5_channels
from app.model.release.conv_trunk import (
    RELEASE_TRUNK,
    ConvGeometry,
    ConvLayerWeights,
    ReleaseConvTrunk,
    conv_trunk_from_blobs,
    read_release_conv_trunk,
)
from app.model.release.errors import ReleaseFormatError
from app.model.release.importer import (
    RELEASE_SCALES,
    ReleaseParts,
    build_release_net,
    import_spp_net_release,
    read_release,
    release_manifest_fields,
)
from app.model.release.layout import pyramid_column_order, reorder_fc6_columns
from app.model.release.spp_model import FcLayer, SppPooler, SppReleaseModel, read_spp_model

__all__ = [
    "RELEASE_SCALES",
    "RELEASE_TRUNK",
    "BboxRegressor",
    "ClassBoxRegressor",
    "ConvGeometry",
    "ConvLayerWeights",
    "FcLayer",
    "ReleaseConvTrunk",
    "ReleaseFormatError",
    "ReleaseParts",
    "SppPooler",
    "SppReleaseModel",
    "build_release_net",
    "check_release_consistency",
    "conv5_channels",
    "conv_trunk_from_blobs",
    "import_spp_net_release",
    "parse_caffe_blobs",
    "pyramid_column_order",
    "read_bbox_regressor",
    "read_caffe_blobs",
    "read_release",
    "read_release_conv_trunk",
    "read_spp_model",
    "release_manifest_fields",
    "reorder_fc6_columns",
]

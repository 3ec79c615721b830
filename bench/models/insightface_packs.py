"""Where insightface's model packs (``buffalo_l``, ``antelopev2``) are published and where insightface puts them.

Shared by the ArcFace recognisers (:mod:`bench.models.arcface`) and the SCRFD detectors
(:mod:`bench.models.insightface_det`), whose files are members of the same zip archives.

* Published: insightface 2.x downloads its packs from the ``model-zoo`` release tag
  (``insightface.utils.storage.MODEL_ZOO_RELEASE_DOWNLOAD_URL``); the older ``v0.7`` release still carries the same
  zips. Both are listed, model-zoo first: the hub tries them in order and checks each against the same checksum.
* Local: ``FaceAnalysis(name, root)`` looks in ``{root}/models/{name}/*.onnx``. insightface's own download extracts the
  zip into that folder, and the ``antelopev2`` zip nests a top folder, so its files end up in
  ``{root}/models/antelopev2/antelopev2/*.onnx``; both places are searched.
"""

from __future__ import annotations

from bench.models.weightspec import Url, WeightSpec

__all__ = ["INSIGHTFACE_LICENCE", "MIRRORS", "pack_caches", "pack_sources", "pack_spec"]

INSIGHTFACE_LICENCE = "non-commercial research only (insightface pretrained models)"

#: release download roots, in the order they are tried
MIRRORS = (
    "https://github.com/deepinsight/insightface/releases/download/model-zoo/",
    "https://github.com/deepinsight/insightface/releases/download/v0.7/",
)


def pack_sources(pack: str, member: str) -> tuple[Url, tuple[Url, ...]]:
    """(source, mirrors) of file ``member`` of pack ``pack``: the pack's zip at each release, in order."""
    urls = [Url(root + f"{pack}.zip", member) for root in MIRRORS]
    return urls[0], tuple(urls[1:])


def pack_caches(pack: str, member: str) -> tuple[str, ...]:
    """The places insightface keeps ``member`` of ``pack`` (flat, and nested one folder deeper by its zip)."""
    return (f"{{insightface_home}}/models/{pack}/{member}", f"{{insightface_home}}/models/{pack}/{pack}/{member}")


def pack_spec(name: str, pack: str, member: str, description: str) -> WeightSpec:
    """The hub spec of file ``member`` of pack ``pack`` (sha256 and size unknown: insightface publishes none)."""
    source, mirrors = pack_sources(pack, member)
    return WeightSpec(name, f"{pack}-{member}", None, None, INSIGHTFACE_LICENCE, (), source, pack_caches(pack, member),
                      description, mirrors)

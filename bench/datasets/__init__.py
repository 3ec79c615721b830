"""Registry of datasets. A new dataset is one module plus one ``DATASETS.register`` line here."""

from bench.registry import Registry

DATASETS: Registry = Registry("dataset", group="bench.datasets")
_reg = DATASETS.register

_reg("demo", "bench.datasets.demo:Demo", doc="8 real faces shipped inside installed packages; no download, no root.")
_reg("lfw", "bench.datasets.lfw:LFW",
     doc="Labeled Faces in the Wild; protocol paper = 5,000 images of people with >1 image (downloads if no root).")
_reg("celebahq", "bench.datasets.celebahq:CelebAHQ", aliases=("celeba-hq",),
     doc="CelebA-HQ (CelebAMask-HQ layout) + CelebA identities; protocol paper = 5,000 identity-disjoint test images.")
_reg("vggface2", "bench.datasets.vggface2:VGGFace2",
     doc="VGGFace2 train/test folders; protocol paper = 1,000 identities x 5 images (test identities first).")
_reg("celeba", "bench.datasets.celeba:CelebA",
     doc="CelebA (img_celeba/ or img_align_celeba/ + identity_CelebA.txt); splits and attributes when present.")
_reg("folder", "bench.datasets.folder:Folder",
     doc="Any <identity>/<image> folder tree (or a labels.txt), for users' own data.")

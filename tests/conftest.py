"""Shared fixtures. Real photos come from $BENCH_TEST_DATA (CI sets it to ../shared/data); tests that need them skip
with a reason when it is absent. Computed caches go to a per-session temp folder, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# One intra-op thread per library: on 2-core CI machines torch, onnxruntime and OpenCV each spawning a pool per
# core oversubscribe the CPU (measured here: an SFace forward+backward took 1.18 s with 2 threads, 0.09 s with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def test_data_root() -> Path | None:
    root = os.environ.get("BENCH_TEST_DATA")
    if not root:
        return None
    p = Path(root).expanduser().resolve()
    return p if p.is_dir() else None


@pytest.fixture
def test_data() -> Path:
    """The shared real-photo folder (celeba/, lfw-mini/, celebahq-mini/), or skip."""
    root = test_data_root()
    if root is None:
        pytest.skip("real photos not available: set BENCH_TEST_DATA to the shared data folder (e.g. ../shared/data)")
    return root


@pytest.fixture
def celeba_root(test_data: Path) -> Path:
    p = test_data / "celeba"
    if not (p / "identity_CelebA.txt").is_file():
        pytest.skip(f"{p} has no identity_CelebA.txt")
    return p


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Computed caches (preprocessing geometry, embeddings) go to a per-session temp folder, shared by the tests of
    one session. Weights keep coming from the user's BENCH_HOME (filled by `make setup`); tests of the weights hub
    point BENCH_HOME at their own temp folder."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "bench_cache"))


@pytest.fixture(scope="session")
def demo_faces() -> np.ndarray:
    """(8, 256, 256, 3) aligned demo crops with landmarks, computed once per session."""
    from bench.datasets import DATASETS
    from bench.face.pipeline import FacePipeline

    ds = DATASETS.build("demo")
    pipe = FacePipeline(use_cache=False)
    faces = [pipe.process(ds.load(r)) for r in ds.refs()]
    return faces


@pytest.fixture
def face_batch(demo_faces):
    from bench.face.mask import face_masks
    from bench.types import FaceBatch, image_seed

    keys = [f"face{i}" for i in range(len(demo_faces))]
    lm5 = np.stack([f.landmarks5 for f in demo_faces])
    lm68 = np.stack([f.landmarks68 for f in demo_faces])
    images = np.stack([f.crop for f in demo_faces])
    return FaceBatch(keys=keys, identities=[f"id{i}" for i in range(len(keys))], images=images, landmarks5=lm5,
                     seeds=[image_seed(0, k) for k in keys], landmarks68=lm68, masks=face_masks(256, lm5, lm68),
                     transforms=np.stack([f.transform for f in demo_faces]))


# -- small real runs for the figure and report tests (tests/figure_runs.py), made once per session -------------------
@pytest.fixture(scope="session")
def base_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    from figure_runs import baseline_runs

    return baseline_runs(str(tmp_path_factory.getbasetemp() / "figure_runs"))


@pytest.fixture(scope="session")
def ours_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    from figure_runs import ours_runs

    return ours_runs(str(tmp_path_factory.getbasetemp() / "figure_runs"))

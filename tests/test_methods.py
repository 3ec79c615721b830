"""Contract tests over EVERY registered method (new plugins are picked up automatically), plus baseline behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.methods import METHODS
from bench.methods.base import Method, MethodResult
from bench.types import FacePool


def _options_for(name: str, tmp_path, batch) -> dict:
    """Options a method needs to run in isolation (e.g. a folder of outputs for `folder`)."""
    if METHODS.entry(name).load().__name__ == "Folder":
        from bench.imageio import write_image

        for key, img in zip(batch.keys, batch.images):
            write_image(tmp_path / f"{key}.png", img[::-1].copy())  # crops, flipped: a different image
        return {"root": str(tmp_path), "aligned": "true"}
    return {}


def _outputs(method: Method, batch) -> np.ndarray:
    out = method.anonymize(batch)
    return out.images if isinstance(out, MethodResult) else out


def _pool_from(batch) -> FacePool:
    return FacePool(keys=[f"pool/{k}" for k in batch.keys], identities=[f"pool-{i}" for i in batch.identities],
                    images=batch.images.copy(), landmarks5=batch.landmarks5.copy(),
                    landmarks68=None if batch.landmarks68 is None else batch.landmarks68.copy(), source="test")


def _one_name_per_class() -> list[str]:
    """The first registry name of every distinct method class (variants share their class's code paths)."""
    seen: dict[str, str] = {}
    for name in METHODS.names():
        seen.setdefault(str(METHODS.entry(name).target), name)
    return sorted(seen.values())


@pytest.mark.parametrize("name", _one_name_per_class())
def test_method_contract(name, face_batch, tmp_path):
    batch = face_batch.subset([0, 1, 2])
    method = METHODS.build(name, device="cpu", **_options_for(name, tmp_path, batch))
    needs = frozenset(getattr(method, "needs", frozenset()))
    pool = _pool_from(face_batch) if "pool" in needs else None
    method.setup({"dataset": "test", "seed": 0, "device": "cpu", "pool": pool, "run_dir": tmp_path})
    if pool is not None:
        batch.extras["pool"] = pool
    a = _outputs(method, batch)
    assert a.shape == batch.images.shape and a.dtype == np.uint8
    b = _outputs(method, batch)
    np.testing.assert_array_equal(a, b)  # same seeds -> same output
    # per-image seeding: processing an image alone gives the same result as within a batch
    single = _outputs(method, batch.subset([1]))
    np.testing.assert_array_equal(single[0], a[1])
    desc = method.describe()
    assert "options" in desc


@pytest.mark.parametrize("name", METHODS.names())
def test_every_variant_builds_with_its_defaults(name, face_batch, tmp_path):
    """Every registered name (variants included) builds, validates its options, and carries its registry defaults."""
    entry = METHODS.entry(name)
    method = METHODS.build(name, device="cpu", **_options_for(name, tmp_path, face_batch.subset([0])))
    assert method.name == entry.name and method.display_name()
    options = method.describe()["options"]
    flat = _flatten(options)
    for key, value in entry.defaults.items():
        got = flat.get(key)
        if isinstance(options.get(key), dict):  # a group named by its PRIMARY leaf (bench/options.py): ifa=off
            got = options[key][type(getattr(method.options, key)).PRIMARY]
        assert got == (list(value) if isinstance(value, tuple) else value), (name, key, got, value)
    assert frozenset(method.needs) <= {"landmarks68", "mask", "transform", "pool"}


def _flatten(options: dict) -> dict:
    """Nested option groups -> {leaf name: value} (variants set leaves by their unambiguous names)."""
    out = {}
    for k, v in options.items():
        if isinstance(v, dict):
            out.update(_flatten(v))
        else:
            out[k] = v
    return out


def test_identity_is_exact(face_batch):
    out = METHODS.build("identity").anonymize(face_batch)
    np.testing.assert_array_equal(out, face_batch.images)


@pytest.mark.parametrize("name", ["blur", "pixelate", "mask", "noise"])
def test_baselines_change_only_the_face_region(name, face_batch):
    out = _outputs(METHODS.build(name), face_batch)
    outside = ~face_batch.masks
    # feathering may touch a few pixels next to the region; far outside nothing changes
    from scipy.ndimage import binary_dilation

    far = ~np.stack([binary_dilation(m, iterations=8) for m in face_batch.masks])
    np.testing.assert_array_equal(out[far], face_batch.images[far])
    inside = face_batch.masks
    assert np.abs(out[inside].astype(int) - face_batch.images[inside].astype(int)).mean() > 3
    assert outside.any()


def test_blur_strength_orders_the_change(face_batch):
    def change(sigma):
        out = METHODS.build("blur", sigma=sigma).anonymize(face_batch)
        return np.abs(out.astype(int) - face_batch.images.astype(int)).mean()

    assert change(2) < change(8) < change(16)


def test_pixelate_blocks_are_constant(face_batch):
    out = METHODS.build("pixelate", block=16, region="crop").anonymize(face_batch)
    blocks = out.reshape(len(out), 16, 16, 16, 16, 3)
    assert (blocks.max(axis=(2, 4)) == blocks.min(axis=(2, 4))).all()


def test_noise_depends_on_seed(face_batch):
    m = METHODS.build("noise")
    a = m.anonymize(face_batch)
    face_batch.seeds = [s + 1 for s in face_batch.seeds]
    assert not np.array_equal(a, m.anonymize(face_batch))


def test_variant_defaults_and_overrides():
    assert METHODS.build("blur-s16").options.sigma == 16
    assert METHODS.build("blur-s16", sigma="3").options.sigma == 3.0
    assert METHODS.build("pixelate-32").options.block == 32
    with pytest.raises(ConfigError, match="valid options"):
        METHODS.build("blur", sigmaa="3")
    with pytest.raises(ConfigError):
        METHODS.build("blur", sigma="-1")


def test_folder_missing_and_unreadable_outputs_are_failures(face_batch, tmp_path):
    from bench.imageio import write_image

    batch = face_batch.subset([0, 1, 2])
    batch.keys = ["a/x.jpg", "b/y.jpg", "c/z.jpg"]
    write_image(tmp_path / "a" / "x.png", batch.images[0])  # other extension than the key: still found
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "y.jpg").write_bytes(b"not an image")
    m = METHODS.build("folder", root=str(tmp_path), aligned="true")
    res = m.anonymize(batch)
    assert set(res.failures) == {1, 2}
    assert "y.jpg" in res.failures[1] and "no output" in res.failures[2]
    np.testing.assert_array_equal(res.images[0], batch.images[0])


def test_folder_full_images_are_aligned_with_the_original_transform(face_batch, tmp_path):
    from bench.datasets import DATASETS
    from bench.imageio import write_image

    ds = DATASETS.build("demo")
    ref = ds.refs()[0]
    full = ds.load(ref)
    write_image(tmp_path / "img.png", full)
    batch = face_batch.subset([0])
    batch.keys = ["img.png"]
    batch.extras["image_sizes"] = {"img.png": full.shape[:2]}
    res = METHODS.build("folder", root=str(tmp_path)).anonymize(batch)
    assert not res.failures
    np.testing.assert_array_equal(res.images[0], batch.images[0])


def test_folder_requires_root():
    with pytest.raises(ConfigError, match="root=PATH"):
        METHODS.build("folder")

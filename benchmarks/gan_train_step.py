"""Time one training step of the conditional generator (Kuang et al., CVPR 2024, Sec. 3.4) and its peak memory.

One step = one G update and one D update of :class:`bench.methods.ours.gan.train.Trainer`; steps alternate the
reconstruction (``rec``) and cycle swap-reconstruction (``swap``, three generator passes) branches, so both are timed
and reported separately. Data are synthetic faces with exact landmarks (no face detection, no dataset needed).

Psi and the perceptual backbone are, by default, networks of the real architectures with random weights
(``--psi standin``: a MobileNetV2 with a 128-d head, the size class of SFace's MobileFaceNet; ``--perceptual
standin``: torchvision VGG19 ``features``), so the timing needs no weight files; ``--psi sface|facenet`` and
``--perceptual auto|vgg19|vgg16`` use the real ones.

The paper's setting, on a GPU (the numbers to write in the notes)::

    python benchmarks/gan_train_step.py --size 256 --batch-size 8 16 --device cuda --json gan_step.json

On this CPU machine, a quick check::

    OMP_NUM_THREADS=2 python benchmarks/gan_train_step.py --size 64 --batch-size 4 --width 16 --steps 4
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.methods.ours.gan.config import ModelConfig, TrainConfig
from bench.methods.ours.gan.data import synthetic_faces
from bench.methods.ours.gan.losses import IdentityNet, VGGPerceptual, load_perceptual, psi_from_registry
from bench.methods.ours.gan.train import Trainer

log = logging.getLogger("gan_train_step")


def standin_psi(size: int) -> IdentityNet:
    """A MobileNetV2 (random weights, 128-d output) on the ArcFace 112 template: SFace-sized compute."""
    import torchvision

    from bench.face.align import template

    net = torchvision.models.mobilenet_v2(num_classes=128)
    return IdentityNet(net, size, template("arcface112"), 112, name="standin-mobilenetv2")


def measure(size: int, batch: int, width: int, steps: int, warmup: int, device: str, amp: bool, psi: str,
            perceptual: str) -> dict:
    cfg = TrainConfig(dataset="synthetic", batch_size=batch, steps=10**9, device=device, amp=amp,
                      out=str(Path(tempfile.gettempdir()) / "gan-bench-unused"), tensorboard=False,
                      model=ModelConfig(size=size, width=width, disc_width=width, psi=psi))
    data = synthetic_faces(max(4 * batch, 32), size)
    psi_net = standin_psi(size) if psi == "standin" else psi_from_registry(psi, size, device)
    if perceptual == "standin":
        import torchvision

        perc = VGGPerceptual(torchvision.models.vgg19().features, "vgg19")
    else:
        perc = load_perceptual(perceptual, device)
    trainer = Trainer(cfg, data=data, psi=psi_net, perceptual=perc)
    cuda = trainer.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        trainer.train_step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: dict[str, list[float]] = {"rec": [], "swap": []}
    for _ in range(steps):
        t0 = time.perf_counter()
        row = trainer.train_step()
        sync()
        times[row["branch"]].append(time.perf_counter() - t0)
    all_t = times["rec"] + times["swap"]
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "size": size, "batch_size": batch, "width": width, "amp": trainer.amp, "psi": psi_net.name,
        "perceptual": cfg.perceptual if perc is None else perc.kind, "timed_steps": steps,
        "sec_per_step": sum(all_t) / len(all_t),
        "sec_rec": sum(times["rec"]) / max(1, len(times["rec"])),
        "sec_swap": sum(times["swap"]) / max(1, len(times["swap"])),
        "g_params_m": sum(p.numel() for p in trainer.G.parameters()) / 1e6,
        "d_params_m": sum(p.numel() for p in trainer.D.parameters()) / 1e6,
    }
    if cuda:
        result["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB
    del trainer
    if cuda:
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (half rec, half swap)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--psi", default="standin", help="standin, sface or facenet")
    ap.add_argument("--perceptual", default="standin", help="standin, auto, vgg19, vgg16 or none")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = []
    for batch in args.batch_size:
        try:
            r = measure(args.size, batch, args.width, args.steps, args.warmup, args.device, not args.no_amp,
                        args.psi, args.perceptual)
        except torch.OutOfMemoryError as exc:
            r = {"size": args.size, "batch_size": batch, "error": f"out of memory: {exc}"}
        results.append(r)
        print(json.dumps(r), flush=True)
    print("\n| device | size | batch | amp | s/step | s rec | s swap | peak GPU GiB | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| | {r['size']} | {r['batch_size']} | | {r['error'][:40]} | | | | |")
            continue
        print(f"| {r['device']} | {r['size']} | {r['batch_size']} | {r['amp']} | {r['sec_per_step']:.3f} | "
              f"{r['sec_rec']:.3f} | {r['sec_swap']:.3f} | {r.get('peak_gpu_mem_gib', float('nan')):.2f} | "
              f"{r['peak_rss_gib']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Images per second of dlib's ResNet recogniser: dlib-bin (the reference) against the torch port, same faces.

Both recognisers run ``embed`` (chip + descriptor) on the same aligned face crops, batch by batch, interleaved round
by round in one process so that load from other jobs on a shared CPU hits both alike; the ratio of each round is
reported with the images/s. Faces: the first ``--images`` photos of a folder (default: CelebA under
``$BENCH_TEST_DATA``) through the face pipeline (YuNet, 5 landmarks, 256 crops).

    OMP_NUM_THREADS=1 python benchmarks/dlib_torch_speed.py --images 200 --batch-sizes 1 32 --threads 1 2

dlib-bin runs on the CPU whatever ``--device`` says (it is built without CUDA); ``--device cuda`` times the torch
port there against dlib-bin on the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    default_photos = Path(os.environ.get("BENCH_TEST_DATA", "../shared/data")) / "celeba" / "img_celeba"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=default_photos, help="folder of face photos (default: %(default)s)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads to try")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per setting")
    ap.add_argument("--device", default="cpu", help="device of the torch port (cpu, cuda)")
    args = ap.parse_args(argv)

    import torch

    from bench.models.benchmark import load_faces
    from bench.models.dlib_recognizer import DlibResNet
    from bench.models.dlib_torch import DlibResNetTorch

    if not args.photos.is_dir():
        print(f"{args.photos}: no such folder; pass --photos or set BENCH_TEST_DATA", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    crops, lms = load_faces(args.images, args.photos)
    print(f"{len(crops)} faces from {args.photos} in {time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")

    def rate(model, batch: int) -> float:
        sync = torch.cuda.synchronize if str(getattr(model, "device", "cpu")).startswith("cuda") else (lambda: None)
        start = time.perf_counter()
        for i in range(0, len(crops), batch):
            model.embed(crops[i : i + batch], lms[i : i + batch])
        sync()
        return len(crops) / (time.perf_counter() - start)

    print(f"{'threads':>7} {'batch':>5} {'dlib-bin img/s':>15} {'torch img/s':>12} {'ratio (per round)':>24}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch_sizes:
            ref = DlibResNet(batch_size=batch)
            port = DlibResNetTorch(device=args.device, batch_size=batch)
            ref.embed(crops[:batch], lms[:batch])  # warm-up (and, for the port, reading the .dat)
            port.embed(crops[:batch], lms[:batch])
            r_ref, r_port = [], []
            for _ in range(args.rounds):
                r_ref.append(rate(ref, batch))
                r_port.append(rate(port, batch))
            ratios = [p / r for p, r in zip(r_port, r_ref)]
            print(f"{threads:>7} {batch:>5} {statistics.median(r_ref):>15.1f} {statistics.median(r_port):>12.1f} "
                  f"{statistics.median(ratios):>8.1f}x ({', '.join(f'{x:.1f}' for x in ratios)})", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

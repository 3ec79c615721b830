"""Training of the conditional generator of Kuang et al., CVPR 2024 (Sec. 3.4): ``bench train ours``.

Each step draws a batch of faces x and, per face, an identity provider y of another identity, then runs one branch
of the paper's "1:1 alternative reconstruction and cycle swap-reconstruction strategy": even steps reconstruct
(Z_id = f_x), odd steps swap the identity to f_y and back (Z_id = f_y, then f_x); see
:mod:`bench.methods.ours.gan.losses` for Eq. 9-13. G and D are updated once per step with Adam (Sec. 4.1), under
float16 autocast with a GradScaler on CUDA.

Outputs under ``--out``: ``config.json``; ``checkpoints/last.pt`` (every ``ckpt_every`` steps and at the end) and
``checkpoints/best.pt`` (lowest validation reconstruction l1), both complete training states (models, optimisers,
scalers, RNG states, step) that ``--resume`` continues bit-for-bit; ``losses.csv`` (one row per step) and
``val.csv``; TensorBoard events when ``tensorboard`` is installed; ``samples/step_XXXXXXX.png`` grids whose rows are
x, x-hat, y-hat, x-bar. A non-finite loss, or non-finite gradients without AMP (or for ``max_skipped`` consecutive
steps with AMP), stops the run with :class:`TrainingDivergedError`; the last good checkpoint is kept.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.config import resolve_device as _resolve_device_name
from bench.errors import BenchError, ConfigError
from bench.imageio import write_image
from bench.methods.ours.gan.config import CHECKPOINT_FORMAT, TrainConfig, config_from_dict, config_to_dict
from bench.methods.ours.gan.data import PreparedFaces, prepare_faces
from bench.methods.ours.gan.inputs import appearance_input, geometry_input, hull_masks, render_structure
from bench.methods.ours.gan.losses import (
    LOSS_TERMS,
    IdentityNet,
    TrainBatch,
    VGGPerceptual,
    discriminator_losses,
    generator_losses,
    load_perceptual,
    psi_from_registry,
)
from bench.methods.ours.gan.networks import Discriminator, Generator
from bench.options import parse_key_values

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "load_checkpoint", "resolve_device", "run_training"]

log = logging.getLogger(__name__)

CSV_COLUMNS = ["step", "branch", "G_total", *LOSS_TERMS, "d_e", "D_hinge", "D_real", "pix_l1", "amp_skipped", "sec"]
VAL_COLUMNS = ["step", "val_l1", "val_id", "best"]
#: fields a resumed run must share with the checkpoint (anything else, e.g. steps or cadence, may change)
_FROZEN_ON_RESUME = ("dataset", "data_root", "dataset_args", "limit", "val_images", "seed", "batch_size", "model",
                     "loss", "perceptual", "face_perceptual", "mask_jitter")
_USE_SAVED = object()


class TrainingDivergedError(BenchError):
    """A loss or gradient became NaN/inf; the message names the step, branch and terms."""


@dataclass
class TrainResult:
    step: int
    out: Path
    last: Path
    best: Path | None
    best_value: float
    perceptual: str


def resolve_device(device: str) -> torch.device:
    """The harness's one device rule (`bench.config.resolve_device`) as a torch device."""
    return torch.device(_resolve_device_name(device))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain values only) and check its format."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"checkpoint {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem means an unusable file
        raise ConfigError(f"checkpoint {p} cannot be read: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"checkpoint {p} is not a `bench train ours` checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Owns G, D, their optimisers and the data of one run. ``fit()`` trains up to ``config.steps``.

    Args:
        config: the run's configuration (``model.id_dim`` 0 is filled in from Psi).
        data: prepared faces (default: :func:`prepare_faces` from the config).
        psi: identity network (default: ``bench.models`` entry ``config.model.psi``).
        perceptual: rho_1 backbone, ``None`` for none (default: from ``config.perceptual``).
    """

    def __init__(self, config: TrainConfig, data: PreparedFaces | None = None, psi: IdentityNet | None = None,
                 perceptual: Any = _USE_SAVED) -> None:
        config.validate()
        self.device = resolve_device(config.device)
        cuda = self.device.type == "cuda"
        size = config.model.size
        self.data = data if data is not None else prepare_faces(
            config.dataset, config.data_root, size, config.limit, config.workers,
            options=parse_key_values([a for a in config.dataset_args.split(",") if a.strip()], "--dataset-arg"))
        if self.data.size != size:
            raise ConfigError(f"prepared faces are {self.data.size}x{self.data.size} but the model is {size}x{size}")
        self.psi = (psi if psi is not None else psi_from_registry(config.model.psi, size, str(self.device)))
        self.psi = self.psi.to(self.device)
        with torch.no_grad():
            id_dim = int(self.psi(torch.zeros(1, 3, size, size, device=self.device)).shape[1])
        if config.model.id_dim not in (0, id_dim):
            raise ConfigError(f"model.id_dim={config.model.id_dim} but Psi {self.psi.name!r} gives {id_dim}-d features")
        if perceptual is _USE_SAVED:
            perceptual = load_perceptual(config.perceptual, str(self.device), config.perceptual_weights)
        self.perceptual: VGGPerceptual | None = perceptual.to(self.device) if perceptual is not None else None
        kind = self.perceptual.kind if self.perceptual is not None else "none"
        self.config = dataclasses.replace(
            config, perceptual=kind, model=dataclasses.replace(config.model, id_dim=id_dim, psi=self.psi.name))
        self.amp = bool(config.amp and cuda)
        if cuda:
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(config.seed)
        self.G = Generator(self.config.model).to(self.device)
        self.D = Discriminator(self.config.model).to(self.device)
        betas = (config.beta_adam1, config.beta_adam2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=betas)
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.train_idx, self.val_idx = self.data.split(config.val_images, config.seed)
        self.rng = np.random.default_rng(config.seed + 1)
        self.step = 0
        self.best_value = math.inf
        self.best_step = -1
        self.amp_skipped = 0
        self.out = Path(config.out).expanduser()
        self._writer: Any = None
        self._warned_single_identity = False
        sample_rng = np.random.default_rng(config.seed + 2)  # fixed validation/sample pairs, never the training rng
        self.val_pairs = self._pairs(self.val_idx[: config.batch_size], sample_rng, self.val_idx)
        self.sample_pairs = (self.val_pairs[0][: config.sample_count], self.val_pairs[1][: config.sample_count])

    # -- data ---------------------------------------------------------------------------------------------------------
    def _pairs(self, idx: np.ndarray, rng: np.random.Generator, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x indices, identity-provider indices): every y of another identity when the pool has one."""
        ids = self.data.identities
        if len(np.unique(ids[pool])) < 2:  # e.g. a tiny validation split: draw providers from all faces
            pool = np.arange(len(self.data))
        y = rng.choice(pool, len(idx))
        for _ in range(20):
            same = ids[y] == ids[idx]
            if not same.any():
                break
            y[same] = rng.choice(pool, int(same.sum()))
        else:
            if not self._warned_single_identity:
                log.warning("some identity providers y share the identity of x (too few identities in the data)")
                self._warned_single_identity = True
        return idx, y

    def make_batch(self, idx: np.ndarray, idy: np.ndarray, radii: np.ndarray | int = 0) -> TrainBatch:
        """Tensors for faces ``idx`` with identity providers ``idy``; the face hole is dilated by ``radii`` px."""
        size, dev = self.config.model.size, self.device

        def images(ix: np.ndarray) -> torch.Tensor:
            arr = torch.from_numpy(np.ascontiguousarray(self.data.crops[ix]))
            return arr.to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)

        x, y = images(idx), images(idy)
        lm = self.data.landmarks68[idx]
        face = hull_masks(lm, size, 0, device=dev)
        hole = hull_masks(lm, size, radii, device=dev) if np.any(np.asarray(radii) > 0) else face
        geo = geometry_input(x, hole, lm, render_structure(lm, size, device=dev))
        with torch.no_grad():
            f_x, f_y = self.psi(x), self.psi(y)
        return TrainBatch(x, y, face, geo, f_x, f_y)

    # -- one step -----------------------------------------------------------------------------------------------------
    def _check_finite(self, branch: str, values: dict[str, torch.Tensor]) -> None:
        bad = {k: float(v) for k, v in values.items() if not torch.isfinite(v).all()}
        if bad:
            last = self.out / "checkpoints" / "last.pt"
            raise TrainingDivergedError(
                f"step {self.step + 1} ({branch} branch): loss term(s) "
                + ", ".join(f"{k}={v}" for k, v in bad.items())
                + f" are not finite; training stopped. Last good checkpoint: {last if last.exists() else 'none'}. "
                "Try a lower learning rate (--set lr_g=..., lr_d=...) or --no-amp.")

    def _backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  params: list[torch.nn.Parameter], what: str, branch: str) -> bool:
        """Backward + step; returns False when AMP skipped the step because of inf/NaN gradients."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        grads = [p.grad for p in params if p.grad is not None]
        finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True
        if not finite and not self.amp:
            names = [n for n, p in (self.G if what == "G" else self.D).named_parameters()
                     if p.grad is not None and not torch.isfinite(p.grad).all()]
            raise TrainingDivergedError(
                f"step {self.step + 1} ({branch} branch): non-finite gradients in {what} "
                f"({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}); training stopped.")
        scaler.step(opt)
        scaler.update()
        return finite

    def train_step(self) -> dict[str, Any]:
        """One G update and one D update on the branch of this step; returns the CSV row."""
        cfg = self.config
        t0 = time.perf_counter()
        branch = "rec" if self.step % 2 == 0 else "swap"
        idx = self.rng.choice(self.train_idx, cfg.batch_size, replace=len(self.train_idx) < cfg.batch_size)
        idx, idy = self._pairs(idx, self.rng, self.train_idx)
        max_r = round(cfg.mask_jitter * cfg.model.size)
        radii = self.rng.integers(0, max_r + 1, cfg.batch_size) if max_r > 0 else 0
        batch = self.make_batch(idx, idy, radii)
        autocast = torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

        self.D.requires_grad_(False)
        with autocast:
            res = generator_losses(self.G, self.D, self.psi, self.perceptual, cfg.loss, batch, branch,
                                   cfg.face_perceptual)
        self._check_finite(branch, {**res.terms, "G_total": res.total.detach()})
        g_ok = self._backward(res.total, self.opt_g, self.scaler_g, list(self.G.parameters()), "G", branch)
        self.D.requires_grad_(True)
        with autocast:
            d_loss, d_terms = discriminator_losses(self.D, batch, res.fakes)
        self._check_finite(branch, d_terms)
        d_ok = self._backward(d_loss, self.opt_d, self.scaler_d, list(self.D.parameters()), "D", branch)

        self.amp_skipped = 0 if (g_ok and d_ok) else self.amp_skipped + 1
        if self.amp_skipped > cfg.max_skipped:
            raise TrainingDivergedError(f"step {self.step + 1}: {self.amp_skipped} consecutive steps had inf/NaN "
                                        "gradients under AMP; training stopped (try --no-amp or a lower lr)")
        out = res.images.get("x_hat", res.images.get("x_bar"))
        self.step += 1
        row = {"step": self.step, "branch": branch, "G_total": float(res.total.detach()),
               **{k: float(v) for k, v in res.terms.items()}, **{k: float(v) for k, v in d_terms.items()},
               "pix_l1": float((out.detach().float() - batch.x).abs().mean()),
               "amp_skipped": self.amp_skipped, "sec": time.perf_counter() - t0}
        return row

    # -- evaluation, samples, checkpoints -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, idx: np.ndarray, idy: np.ndarray) -> dict[str, torch.Tensor]:
        """x, x-hat, y-hat and x-bar for fixed pairs (no hole jitter)."""
        b = self.make_batch(idx, idy)
        z_a = appearance_input(b.x, b.face)
        x_hat, f_a = self.G(b.f_x, z_a, b.geometry.tensor())
        y_hat, _ = self.G(b.f_y, z_a, b.geometry.tensor(), f_a=f_a)
        x_bar, _ = self.G(b.f_x, appearance_input(y_hat, b.face), b.geometry.with_background_from(y_hat).tensor())
        return {"x": b.x, "x_hat": x_hat.float(), "y_hat": y_hat.float(), "x_bar": x_bar.float(), "f_x": b.f_x}

    def evaluate(self) -> dict[str, float]:
        out = self.generate(*self.val_pairs)
        val_l1 = float((out["x_hat"] - out["x"]).abs().mean())
        val_id = float((self.psi(out["x_hat"]) - out["f_x"]).norm(dim=1).mean())
        return {"val_l1": val_l1, "val_id": val_id}

    def save_samples(self) -> Path:
        import torchvision

        out = self.generate(*self.sample_pairs)
        rows = torch.cat([out["x"], out["x_hat"], out["y_hat"], out["x_bar"]]).clamp(0, 1).cpu()
        grid = torchvision.utils.make_grid(rows, nrow=len(self.sample_pairs[0]), padding=2)
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        write_image(path, (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
        return path

    def state_dict(self) -> dict[str, Any]:
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(self.config),
            "step": self.step,
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(), "cuda": cuda_rng},
            "best": {"metric": "val_l1", "value": self.best_value, "step": self.best_step},
            "amp_skipped": self.amp_skipped,
            "data": {"source": self.data.source, "n_train": len(self.train_idx), "n_val": len(self.val_idx)},
            "versions": {"torch": str(torch.__version__)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        self.best_value = float(state["best"]["value"])
        self.best_step = int(state["best"]["step"])
        self.amp_skipped = int(state.get("amp_skipped", 0))

    def save(self, name: str = "last") -> Path:
        path = self.out / "checkpoints" / f"{name}.pt"
        _atomic_save(self.state_dict(), path)
        return path

    # -- logs ---------------------------------------------------------------------------------------------------------
    def _open_logs(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(config_to_dict(self.config), indent=2))
        for name, cols in (("losses.csv", CSV_COLUMNS), ("val.csv", VAL_COLUMNS)):
            path = self.out / name
            rows = []
            if path.is_file() and self.step > 0:  # resumed: drop rows written after the checkpoint
                with open(path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, cols)
                writer.writeheader()
                writer.writerows(rows)
        self._loss_file = open(self.out / "losses.csv", "a", newline="")  # noqa: SIM115 - closed in fit()
        self._loss_csv = csv.DictWriter(self._loss_file, CSV_COLUMNS, extrasaction="ignore")
        if self.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step + 1)
            except ImportError:
                log.info("tensorboard is not installed: losses go to losses.csv only")

    def _log(self, row: dict[str, Any]) -> None:
        self._loss_csv.writerow(row)
        if self._writer is not None:
            for k, v in row.items():
                if isinstance(v, float):
                    self._writer.add_scalar(f"{row['branch']}/{k}", v, row["step"])

    # -- loop ---------------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.config
        self._open_logs()
        log.info("training %s steps %d -> %d on %s (amp=%s, perceptual=%s, psi=%s, %d train / %d val faces)",
                 cfg.model.size, self.step, cfg.steps, self.device, self.amp, cfg.perceptual, cfg.model.psi,
                 len(self.train_idx), len(self.val_idx))
        last = self.out / "checkpoints" / "last.pt"
        try:
            while self.step < cfg.steps:
                row = self.train_step()
                self._log(row)
                s = self.step
                if s % cfg.log_every == 0 or s == cfg.steps:
                    self._loss_file.flush()
                    log.info("step %d/%d %s G=%.4f D=%.4f pix_l1=%.4f (%.3f s/step)", s, cfg.steps, row["branch"],
                             row["G_total"], row["D_hinge"], row["pix_l1"], row["sec"])
                if s % cfg.eval_every == 0 or s == cfg.steps:
                    self._eval_and_keep_best()
                if s % cfg.sample_every == 0 or s == cfg.steps:
                    self.save_samples()
                if s % cfg.ckpt_every == 0 or s == cfg.steps:
                    self._loss_file.flush()
                    last = self.save("last")
        finally:
            self._loss_file.close()
            if self._writer is not None:
                self._writer.close()
        if not last.exists():  # steps already reached before this call
            last = self.save("last")
        best = self.out / "checkpoints" / "best.pt"
        return TrainResult(self.step, self.out, last, best if best.exists() else None, self.best_value,
                           cfg.perceptual)

    def _eval_and_keep_best(self) -> None:
        metrics = self.evaluate()
        improved = metrics["val_l1"] < self.best_value
        if improved:
            self.best_value, self.best_step = metrics["val_l1"], self.step
        with open(self.out / "val.csv", "a", newline="") as f:
            csv.DictWriter(f, VAL_COLUMNS).writerow({"step": self.step, **metrics, "best": int(improved)})
        if self._writer is not None:
            for k, v in metrics.items():
                self._writer.add_scalar(f"val/{k}", v, self.step)
        if improved:
            self.save("best")


def _check_resume(config: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """``config`` for a resumed run: frozen fields must match the checkpoint's (auto values take the saved ones)."""
    model = config.model if config.model.id_dim else dataclasses.replace(config.model, id_dim=saved.model.id_dim)
    config = dataclasses.replace(config, model=model)
    if config.perceptual == "auto":
        config = dataclasses.replace(config, perceptual=saved.perceptual)
    diffs = [f"{name}: checkpoint {getattr(saved, name)!r}, now {getattr(config, name)!r}"
             for name in _FROZEN_ON_RESUME if getattr(config, name) != getattr(saved, name)]
    if diffs:
        raise ConfigError("--resume with a configuration that differs from the checkpoint's: " + "; ".join(diffs))
    return config


def run_training(config: TrainConfig, resume: bool = False, data: PreparedFaces | None = None,
                 psi: IdentityNet | None = None, perceptual: Any = _USE_SAVED) -> TrainResult:
    """Train (or, with ``resume``, continue from ``<out>/checkpoints/last.pt``) and return where things are."""
    state = None
    last = Path(config.out).expanduser() / "checkpoints" / "last.pt"
    if not resume and last.is_file():
        raise ConfigError(f"{last} exists: pass --resume to continue that run, or choose another --out")
    if resume:
        path = Path(config.out).expanduser() / "checkpoints" / "last.pt"
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {path}")
        state = load_checkpoint(path)
        config = _check_resume(config, config_from_dict(state["config"]))
    trainer = Trainer(config, data=data, psi=psi, perceptual=perceptual)
    if state is not None:
        trainer.load_state_dict(state)
        log.info("resumed from %s at step %d", config.out, trainer.step)
    return trainer.fit()

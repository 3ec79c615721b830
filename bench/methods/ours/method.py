"""The attention-distraction anonymiser of Kuang et al., "Facial Identity Anonymization via Intrinsic and Extrinsic
Attention Distraction", CVPR 2024 (registered as ``ours`` and its ablation variants).

Step 1 (anonymisation, Sec. 3.1-3.2), on the whole batch:

* IFA (Eq. 1-5, :mod:`~bench.methods.ours.ifa`): Grad-CAM of the top-K classes of Psi at its last feature map,
  attention distraction of A, the recast identity feature f_x = Z_id and the evidence it removed;
* VAA (Eq. 6-7, :mod:`~bench.methods.ours.vaa`): an appearance delegate Z_a drawn by IPD sampling over recogniser
  features of a delegate pool of *other* identities;
* GSA (Eq. 6, 8 and the recovery step, :mod:`~bench.methods.ours.gsa`): a pose-matched delegate geometry whose
  contour and mouth are brought back to x's, giving S-hat.

Step 2 (synthesis) is pluggable (:class:`~bench.methods.ours.step.Synthesizer`): ``synth=warp`` is the harness's
training-free renderer and realisation of Z_id (:mod:`~bench.methods.ours.warp`, :mod:`~bench.methods.ours.realise`),
``synth=gan checkpoint=PATH`` the paper's trained conditional generator (``bench/methods/ours/gan``).

Options come in three groups (:mod:`~bench.methods.ours.config`); ablations (Tables 4-6, Figures 4 and 6) are option
sets registered as named variants in ``bench/methods/__init__.py``. Random draws (IFA-Rand, IPD, the realisation's
transformations) use each image's own seeded generators and every computation is per image, so an output depends
only on the run seed, the image and the pool, not on the batch it came in: images are processed in padded chunks of
one fixed size (:meth:`Ours.chunk_size`), so even the float rounding of batched kernels is the same.

Privacy is measured honestly only against recognisers the method never used: :meth:`Ours.white_box_models` names Psi
(IFA, its codebook head and the realisation objective) and the VAA feature recogniser, and the runner marks their
identity records ``white_box``. A delegate, or a codebook class, of the query's own identity is never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError
from bench.methods.base import Method, MethodResult
from bench.methods.ours.config import OursOptions
from bench.types import FaceBatch, FacePool

__all__ = ["Ours"]

log = logging.getLogger(__name__)


@dataclass
class _PoolState:
    """Everything computed once per delegate pool."""

    pool: FacePool
    vaa_features: np.ndarray | None
    geometry: Any  # GeometryIndex or None


class Ours(Method):
    """Attention-distraction anonymiser (IFA + VAA + GSA, then a synthesiser), Kuang et al. CVPR 2024."""

    needs = frozenset({"landmarks68", "mask", "pool"})
    Options = OursOptions

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device=device, **options)
        from bench.methods.ours.vaa import resolve_feature_model, weights_present
        from bench.models import MODELS

        o = self.options
        # "auto" is resolved now, so the options recorded in the manifest (and the run's config hash) name the model
        psi = o.ifa.psi if o.ifa.psi != "auto" else ("facenet" if weights_present("facenet") else "sface")
        for what, name in (("psi", psi), ("vaa_features", o.vca.vaa_features)):
            if name != "auto" and (name not in MODELS or "recognizer" not in MODELS.entry(name).tags):
                known = ", ".join(MODELS.names(tag="recognizer"))
                raise ConfigError(f"method ours: {what}={name!r} is not a registered recogniser; choose one of {known}")
        vaa = resolve_feature_model(o.vca.vaa_features, psi)
        self.options = dataclasses.replace(o, ifa=dataclasses.replace(o.ifa, psi=psi),
                                           vca=dataclasses.replace(o.vca, vaa_features=vaa))
        self._psi: Any = None
        self._synth: Any = None
        self._recognizer: Any = None
        self._setup_pool: FacePool | None = None
        self._state: _PoolState | None = None
        self._digest: tuple[FacePool, str] | None = None  # (pool, _pool_digest(pool)) of the last pool seen
        self._stats: dict[str, list[float]] = {}
        self.last_info: list[dict[str, Any]] = []  # per image of the last batch: delegates, draws, IFA classes

    # -- lazily built parts -------------------------------------------------------------------------------------
    @property
    def uses_psi(self) -> bool:
        return self.options.ifa.mode != "off"

    def white_box_models(self) -> frozenset[str]:
        """Psi (IFA, its head, the realisation objective) and the VAA feature recogniser, when they are used."""
        o = self.options
        used = {o.ifa.psi} if self.uses_psi else set()
        if o.vca.vaa != "off":
            used.add(o.vca.vaa_features)
        return frozenset(used)

    def psi(self) -> Any:
        if self._psi is None:
            from bench.methods.ours.psi import LinearHead, build_psi

            o = self.options.ifa
            self._psi = build_psi(o.psi, self.device, layer=o.layer, own_classes=o.codebook == "auto")
            if o.codebook not in ("auto", "pool"):
                self._psi.set_head(LinearHead.load(o.codebook))
        return self._psi

    def recognizer(self) -> Any:
        if self._recognizer is None:
            from bench.methods.ours.vaa import FeatureExtractor

            self._recognizer = FeatureExtractor(self.options.vca.vaa_features, self.device)
        return self._recognizer

    def synthesizer(self) -> Any:
        if self._synth is None:
            o = self.options.synth
            if o.kind == "gan":
                try:
                    from bench.methods.ours.gan.synth import GanSynthesizer
                except ModuleNotFoundError as exc:
                    raise ConfigError(f"method ours: synth=gan is not available here ({exc})") from None
                self._synth = GanSynthesizer(o.checkpoint, self.device)
            else:
                from bench.methods.ours.warp import WarpSynthesizer

                self._synth = WarpSynthesizer(o, self.device)
        return self._synth

    def setup(self, context: dict[str, Any]) -> None:
        self._setup_pool = context.get("pool")
        self.synthesizer()
        if self.uses_psi:
            self.psi()
        if self._setup_pool is not None:
            self._pool_state(self._setup_pool)

    # -- the delegate pool: VAA features, geometry index, Psi's codebook head -------------------------------------
    def _pool_state(self, pool: FacePool) -> _PoolState:
        if self._state is not None and self._state.pool is pool:
            return self._state
        from bench.methods.ours.gsa import GeometryIndex

        o = self.options
        if len(pool) == 0:
            raise ConfigError("method ours: the delegate pool is empty")
        raw = None  # Psi's raw features of the pool faces, when Psi ran on them
        if self.uses_psi and (self.psi().head is None or o.ifa.codebook == "pool"):
            head, raw = self._pool_head(pool)
            self.psi().set_head(head)
        feats = None
        if o.vca.vaa != "off":
            if o.vca.vaa_features == o.ifa.psi and self.uses_psi:
                raw = self._pool_raw_features(pool) if raw is None else raw
                feats = (raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)).astype(np.float32)
            else:
                feats = self.recognizer()(pool.images, pool.landmarks5)
        geometry = None
        if o.vca.gsa != "off":
            if pool.landmarks68 is None:
                raise ConfigError("method ours: GSA needs 68-point landmarks of the pool faces (pipeline landmarks68)")
            geometry = GeometryIndex.build(pool.landmarks68)
        self._state = _PoolState(pool, feats, geometry)
        log.info("ours: pool of %d faces (%d identities) ready", len(pool), len(set(pool.identities)))
        return self._state

    def _pool_raw_features(self, pool: FacePool, mirrored: bool = False) -> np.ndarray:
        """(N, D) Psi's raw features of the pool faces (or of their mirror images), cached by content: every cell of
        an ablation sweep shares one pool, and on a CPU these features are most of a cell's set-up time."""
        from bench.cache import cache_root

        psi = self.psi()
        key_src = json.dumps(["raw-features-1", psi.name, psi.fingerprint, psi.layer, self._pool_digest(pool),
                              list(pool.keys), mirrored])
        path = Path(cache_root()) / "ours-features" / f"{hashlib.sha256(key_src.encode()).hexdigest()[:20]}.npy"
        if path.is_file():
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.ndim == 2 and len(cached) == len(pool) and np.isfinite(cached).all():
                    return cached
                raise ValueError(f"shape {cached.shape} for {len(pool)} faces")
            except (OSError, ValueError) as exc:  # a damaged entry is recomputed and rewritten
                log.warning("ours: ignoring damaged cached pool features %s (%s)", path, exc)
        raw = self._compute_pool_raw_features(pool, mirrored).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, raw)
        os.replace(tmp, path)
        return raw

    def _pool_digest(self, pool: FacePool) -> str:
        """:func:`_pool_digest`, once per pool (the head and both feature caches key on it)."""
        if self._digest is None or self._digest[0] is not pool:
            self._digest = (pool, _pool_digest(pool))
        return self._digest[1]

    def _compute_pool_raw_features(self, pool: FacePool, mirrored: bool) -> np.ndarray:
        import torch

        from bench.methods.ours.shapes import mirror_points5

        psi = self.psi()
        size = pool.images.shape[2]
        out = []
        with torch.inference_mode():
            for s in range(0, len(pool), 32):
                img = pool.images[s : s + 32]
                lm = np.asarray(pool.landmarks5[s : s + 32], np.float64)
                if mirrored:
                    img, lm = img[:, :, ::-1], np.stack([mirror_points5(p, size) for p in lm])
                x = torch.from_numpy(np.ascontiguousarray(img)).to(psi.device).permute(0, 3, 1, 2).float() / 255
                out.append(psi.raw_features(psi.align(x, lm)).cpu().numpy())
        return np.concatenate(out)

    def _pool_head(self, pool: FacePool) -> tuple[Any, np.ndarray | None]:
        """Psi's classes from the pool: a linear softmax head on the faces and their mirror images, trained once
        and cached by content. Returns the head and the pool's raw features when they were computed (cache miss)."""
        from bench import __version__
        from bench.cache import cache_root
        from bench.methods.ours.psi import HEAD_FORMAT, LinearHead

        psi, l2 = self.psi(), self.options.ifa.codebook_l2
        content = self._pool_digest(pool)
        key_src = json.dumps([HEAD_FORMAT, psi.name, psi.fingerprint, psi.layer, content, list(pool.keys),
                              list(map(str, pool.identities)), l2])
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        path = Path(cache_root()) / "ours-heads" / f"{key}.npz"
        if path.is_file():
            try:
                head = LinearHead.load(path)
                log.info("ours: codebook head from the cache (%s)", path)
                return head, None
            except ConfigError as exc:  # a damaged cache entry is retrained
                log.warning("ours: ignoring a damaged cached head (%s)", exc)
        raw = self._pool_raw_features(pool)
        both = np.concatenate([raw, self._pool_raw_features(pool, mirrored=True)])
        ids = [str(i) for i in pool.identities] * 2  # the faces, then their mirror images
        prov = {"source": f"delegate pool: {pool.source or 'unnamed'}", "pool_size": len(pool),
                "pool_identities": len(set(ids)), "pool_content_hash": content, "psi": psi.name,
                "psi_weights": psi.fingerprint, "layer": psi.layer, "augmentation": "mirror images",
                "trained_by": f"bench {__version__}", "cache_key": key}
        head = LinearHead.fit(both, ids, l2=l2, provenance=prov)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        head.save(tmp)
        os.replace(tmp, path)
        log.info("ours: trained a %d-class codebook head on %d pool faces (train accuracy %.3f)", len(head),
                 len(pool), head.provenance["train_accuracy"])
        return head, raw

    # -- step 1 + step 2 on the batch ---------------------------------------------------------------------------
    def anonymize(self, batch: FaceBatch) -> MethodResult:
        import torch

        from bench.methods.ours.ipd import eligible_mask

        pool = batch.extras.get("pool")
        pool = self._setup_pool if pool is None else pool
        if pool is None:
            raise ConfigError("method ours needs a delegate pool (the runner builds one; see --pool-root)")
        if batch.landmarks68 is None:
            raise ConfigError("method ours needs 68-point landmarks (pipeline option landmarks68)")
        state = self._pool_state(pool)
        n, size = len(batch), batch.size
        images = batch.images.copy()
        names = ("cam_H", "cam_H_hat", "delegate_appearance", "geometry", "warped")
        extras = {k: np.zeros((n, size, size, 3), np.uint8) for k in names}
        diagnostics: dict[str, np.ndarray] = {}
        failures: dict[int, str] = {}
        eligible, allowed = {}, {}
        labels = self.psi().class_labels() if self.uses_psi else None
        for i in range(n):
            eligible[i] = eligible_mask(pool.identities, batch.identities[i], pool.keys, batch.keys[i])
            if labels is not None:  # a class of the query's own identity is never distracted
                allowed[i] = np.asarray([lab != str(batch.identities[i]) for lab in labels])
            if not eligible[i].any():
                failures[i] = f"the delegate pool ({len(pool)} faces) has no face of another identity"
            elif labels is not None and not allowed[i].any():
                failures[i] = "IFA: the codebook holds only the query's own identity"
        ok = [i for i in range(n) if i not in failures]
        infos: list[dict[str, Any]] = []
        chunk = self.chunk_size()
        for start in range(0, len(ok), chunk):
            part = ok[start:start + chunk]
            # Batched kernels round differently for different batch shapes, so every chunk is padded to the same
            # size (repeating its last image): an image's output is then bitwise the same whichever batch it came
            # in (``--batch-size`` and a resumed run do not change results). The padding's outputs are dropped.
            padded = part + [part[-1]] * (chunk - len(part))
            self.last_info = [{"key": batch.keys[i]} for i in padded]
            with torch.no_grad():
                out, ex, diag = self._anonymize(batch, padded, state, eligible, allowed)
            m = len(part)
            infos.extend(self.last_info[:m])
            images[part] = out[:m]
            for k, v in ex.items():
                extras[k][part] = v[:m]
            for k, v in diag.items():
                col = diagnostics.setdefault(k, np.full(n, np.nan))
                col[part] = v[:m]
                self._stats.setdefault(k, []).extend(float(t) for t in v[:m] if np.isfinite(t))
        self.last_info = infos
        return MethodResult(images, failures, extras, diagnostics)

    def chunk_size(self) -> int:
        """Images per internal batch: 8 on a CPU (larger batches were not faster on 2 cores), 32 on an accelerator."""
        return 8 if str(self.device).startswith("cpu") else 32

    def _anonymize(self, batch: FaceBatch, ok: list[int], state: _PoolState, eligible: dict[int, np.ndarray],
                   allowed: dict[int, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        import torch

        from bench.methods.ours import gsa as G
        from bench.methods.ours.ifa import run_ifa
        from bench.methods.ours.ipd import ipd_draw
        from bench.methods.ours.shapes import normalize_shapes, pose_features
        from bench.methods.ours.step import Step1Output
        from bench.methods.ours.vaa import appearance_utility, l2_distances

        o, dev, pool = self.options, self.device, state.pool
        rngs = [batch.rng(i) for i in ok]
        x = batch.images[ok]
        lm5 = batch.landmarks5[ok].astype(np.float64)
        lm68 = batch.landmarks68[ok].astype(np.float64)  # type: ignore[index]
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev).permute(0, 3, 1, 2).float() / 255.0
        extras: dict[str, np.ndarray] = {}
        diag: dict[str, np.ndarray] = {}

        # IFA (Eq. 1-5)
        ifa, psi = None, None
        if self.uses_psi:
            psi = self.psi()
            allow = np.stack([allowed[i] for i in ok]) if allowed else None
            ifa = run_ifa(psi, psi.align(xt, lm5), o.ifa, allow, rngs)
            labels = psi.class_labels()
            for j, info in enumerate(self.last_info):
                info["ifa_classes"] = ifa.classes[j] if labels is None else [labels[c] for c in ifa.classes[j]]
            diag["ifa_cos_f_fx"] = ifa.cosine
            for k in range(ifa.residuals.shape[1]):
                diag[f"ifa_residual_c{k + 1}"] = ifa.residuals[:, k]
                diag[f"ifa_score_drop_c{k + 1}"] = ifa.score_drop[:, k]
            extras["cam_H"], extras["cam_H_hat"] = _cam_overlays(x, lm5, psi, ifa.heatmap, ifa.heatmap_hat)

        # VAA (Eq. 6-7) and GSA (Eq. 6, 8, recovery), image by image with each image's generator
        queries = None
        if o.vca.vaa != "off":
            if ifa is not None and o.vca.vaa_features == o.ifa.psi:
                queries = ifa.f.cpu().numpy()
            else:
                queries = self.recognizer()(x, lm5)
        z_a, z_a_lm, s_hat = x.copy(), lm68.copy(), lm68.copy()
        for j, i in enumerate(ok):
            info = self.last_info[j]
            if queries is not None:
                assert state.vaa_features is not None
                d = l2_distances(queries[j], state.vaa_features)
                draw = ipd_draw(d, eligible[i], o.vca.neighbors, o.vca.epsilon, o.vca.sensitivity,
                                appearance_utility if o.vca.use_ua else None, rngs[j], strategy=o.vca.vaa)
                z_a[j], z_a_lm[j] = pool.images[draw.index], pool.landmarks68[draw.index]  # type: ignore[index]
                info.update(vaa_delegate=pool.keys[draw.index], vaa_delegate_identity=pool.identities[draw.index],
                            vaa_draw=draw.as_info())
            if o.vca.gsa != "off":
                qn = normalize_shapes(lm68[j])
                matched = G.pose_matched(pose_features(qn), state.geometry.poses, eligible[i], o.vca.pose_tolerance)
                d = G.shape_distances(qn, state.geometry.normalized)
                draw = ipd_draw(d, matched, o.vca.neighbors, o.vca.epsilon, o.vca.sensitivity,
                                G.geometry_utility if o.vca.use_ug else None, rngs[j], strategy=o.vca.gsa)
                s_tilde = G.align_delegate(np.asarray(pool.landmarks68[draw.index], np.float64), lm68[j])  # type: ignore[index]
                s_hat[j] = G.recover(s_tilde, lm68[j]) if o.vca.recovery else s_tilde
                info.update(gsa_delegate=pool.keys[draw.index], gsa_delegate_identity=pool.identities[draw.index],
                            gsa_draw=draw.as_info())

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)

        masks = batch.masks[ok] if batch.masks is not None else np.ones((len(ok), batch.size, batch.size), bool)
        step1 = Step1Output(
            x=xt, mask=t(masks)[:, None], landmarks68=t(lm68), z_id=None if ifa is None else ifa.z_id,
            z_a=torch.from_numpy(np.ascontiguousarray(z_a)).to(dev).permute(0, 3, 1, 2).float() / 255.0,
            z_a_landmarks68=t(z_a_lm), s_hat=t(s_hat), psi=psi, landmarks5=t(lm5),
            f_id=None if ifa is None else ifa.f, removed=None if ifa is None else ifa.removed)
        y = self.synthesizer()(step1, [batch.torch_generator(i, device=dev) for i in ok])
        out = np.ascontiguousarray((y.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
                                   .permute(0, 2, 3, 1).cpu().numpy())
        warp = step1.info.get("warp")
        if warp is not None:
            extras["warped"] = warp["blended"]
        real = step1.info.get("realisation")
        if real is not None:
            diag.update(realise_cos_f_before=real.cos_f_before, realise_cos_f_after=real.cos_f_after,
                        realise_cos_r_before=real.cos_r_before, realise_cos_r_after=real.cos_r_after,
                        realise_reverted=real.reverted.astype(np.float64))
        extras["delegate_appearance"] = z_a
        extras["geometry"] = np.stack([_draw_geometry(x[j], lm68[j], s_hat[j]) for j in range(len(ok))])
        return out, extras, diag

    # -- manifest -----------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        out = super().describe()
        o = self.options
        out.update({
            "paper": "Kuang et al., Facial Identity Anonymization via Intrinsic and Extrinsic Attention Distraction, "
                     "CVPR 2024",
            "psi": self._psi.describe() if self._psi is not None else {"name": o.ifa.psi if self.uses_psi else None},
            "white_box_recognizers": sorted(self.white_box_models()),
            "K": o.ifa.top_k if self.uses_psi else 0,
            "w_i": list(o.ifa.class_weights) or ([1.0] * o.ifa.top_k if self.uses_psi else []),
            "ifa_classes": {"topk": "top-K predictions (paper)", "rand": "K random codebook classes (IFA-Rand)",
                            "kfn": "K lowest-scoring classes (IFA-KFN)", "off": "no IFA"}[o.ifa.mode],
            "diversity_term": {"j": o.ifa.diversity_j, "weight": o.ifa.diversity_weight} if o.ifa.diversity_j else None,
            "epsilon": o.vca.epsilon,
            "k": o.vca.neighbors,
            "sensitivity": o.vca.sensitivity,
            "vaa": {"strategy": o.vca.vaa, "features": o.vca.vaa_features if o.vca.vaa != "off" else None,
                    "feature_path": self._recognizer.path if self._recognizer is not None else None,
                    "utility": "Eq. 7" if o.vca.use_ua else "uniform over M_q"},
            "gsa": {"strategy": o.vca.gsa, "utility": "Eq. 8" if o.vca.use_ug else "uniform over M_q",
                    "recovery": o.vca.recovery, "pose_tolerance": o.vca.pose_tolerance},
            "synthesizer": self._synth.describe() if self._synth is not None and hasattr(self._synth, "describe")
            else {"name": o.synth.kind},
        })
        pool = self._state.pool if self._state is not None else self._setup_pool
        if pool is not None:
            out["pool"] = {"source": pool.source, "size": len(pool), "identities": len(set(pool.identities)),
                           "content_hash": pool.content_hash}
        if self._stats:
            out["diagnostics"] = {k: {"mean": float(np.mean(v)) if v else None, "n": len(v)}
                                  for k, v in sorted(self._stats.items())}
        return out


def _pool_digest(pool: FacePool) -> str:
    """Hash of what Psi sees of the pool: the crops and their 5 landmarks (the source files' hashes alone would
    miss a change of detector or crop size, which changes the crops)."""
    h = hashlib.sha256()
    for a in (pool.images, np.asarray(pool.landmarks5, np.float32)):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _cam_overlays(x: np.ndarray, lm5: np.ndarray, psi: Any, heat: np.ndarray, heat_hat: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """H and H-hat (Figure 7) drawn over each crop: both scaled by max(H), so a distracted H-hat shows as darker."""
    import cv2

    from bench.face.align import estimate_similarity

    size = x.shape[1]
    out = np.zeros((2, *x.shape), np.uint8)
    for b in range(len(x)):
        m = estimate_similarity(lm5[b], psi.template_points)  # crop -> Psi input
        scale = float(heat[b].max()) or 1.0
        for j, h in enumerate((heat[b], heat_hat[b])):
            up = cv2.resize((h / scale).astype(np.float32), (psi.input_size, psi.input_size),
                            interpolation=cv2.INTER_CUBIC)
            back = cv2.warpAffine(np.clip(up, 0, 1), m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            colour = cv2.applyColorMap((back * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
            out[j, b] = np.clip(0.5 * x[b] + 0.5 * colour + 0.5, 0, 255).astype(np.uint8)
    return out[0], out[1]


def _draw_geometry(x: np.ndarray, s_x: np.ndarray, s_hat: np.ndarray) -> np.ndarray:
    """x with its landmarks S_x (green) and the anonymised geometry S-hat (red)."""
    import cv2

    canvas = np.ascontiguousarray(x.copy())
    for pts, colour in ((s_x, (0, 200, 0)), (s_hat, (230, 30, 30))):
        for px, py in np.round(pts).astype(int):
            cv2.circle(canvas, (int(px), int(py)), 1, colour, -1)
    return canvas

"""The attention-distraction anonymiser of Kuang et al., "Facial Identity Anonymization via Intrinsic and Extrinsic
Attention Distraction", CVPR 2024 (registered as ``ours`` and its ablation variants).

Step 1 (anonymisation, Sec. 3.1-3.2), per image:

* IFA (Eq. 1-5, :mod:`~bench.methods.ours.ifa`): Grad-CAM of the top-K classes of Psi at its last convolutional layer,
  attention distraction of A, and the recast identity feature f_x = Z_id;
* VAA (Eq. 6-7, :mod:`~bench.methods.ours.vaa`): an appearance delegate Z_a drawn by IPD sampling over recogniser
  features of a delegate pool of *other* identities;
* GSA (Eq. 6, 8 and the recovery step, :mod:`~bench.methods.ours.gsa`): a pose-matched delegate geometry whose
  contour and mouth are brought back to x's, giving S-hat.

Step 2 (synthesis) is pluggable (:class:`~bench.methods.ours.step.Synthesizer`): ``synth=warp`` is the harness's
training-free renderer (:mod:`~bench.methods.ours.warp`), ``synth=gan checkpoint=PATH`` the paper's trained
conditional generator (``bench/methods/ours/gan``).

Ablations (Tables 4-6, Figures 4 and 6) are option sets, registered as named variants in ``bench/methods/__init__.py``.
Random draws (IPD, IFA-Rand) use each image's own seeded generator and every image is processed alone, so an
output depends only on the run seed, the image, and the pool.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.errors import ConfigError
from bench.methods.base import Method, MethodResult
from bench.types import FaceBatch, FacePool

__all__ = ["Ours"]

log = logging.getLogger(__name__)

_PSIS = ("auto", "sface", "facenet")


class _NoDelegate(Exception):
    """An image for which the pool holds no face of another identity."""


@dataclass
class _PoolState:
    """Everything computed once per delegate pool."""

    pool: FacePool
    vaa_features: np.ndarray | None
    geometry: Any  # GeometryIndex or None
    codebook_built: bool


class Ours(Method):
    """Attention-distraction anonymiser (IFA + VAA + GSA, then a synthesiser), Kuang et al. CVPR 2024."""

    stochastic = True
    needs = frozenset({"landmarks68", "mask", "pool"})

    @dataclass(frozen=True)
    class Options:
        # -- IFA (Sec. 3.1) ----------------------------------------------------------------------------------
        psi: str = "auto"  # facenet (paper; download) | sface (offline) | auto (facenet when its weights are present)
        codebook: str = "pool"  # Psi=sface classes: "pool" (identity prototypes of the pool) or an .npz file
        codebook_scale: float = 64.0  # s of y^c = s * cos(f, P_c)
        ifa: Literal["topk", "rand", "kfn", "off"] = "topk"  # classes to distract (Table 5); off = w/o IFA
        top_k: int = 3  # K of Eq. 5 (the paper recommends 2-4)
        class_weights: tuple[float, ...] = ()  # w_1..w_K of Eq. 5; empty = 1 for every class
        diversity_j: int = 0  # > 0 adds the bottom-j term of Figure 4
        diversity_weight: float = 1.0
        # -- VCA: IPD sampling (Eq. 6), VAA (Eq. 7), GSA (Eq. 8) ---------------------------------------------
        vaa: Literal["ipd", "rand", "kfn", "off"] = "ipd"  # off = w/o VAA (Z_a = x)
        gsa: Literal["ipd", "rand", "kfn", "off"] = "ipd"  # off = w/o GSA (S-hat = S_x); rand/kfn: Table 5
        use_ua: bool = True  # False: uniform over M_q instead of Eq. 7 (Table 6 "w/o u_a")
        use_ug: bool = True  # False: uniform over M_q instead of Eq. 8 (Table 6 "w/o u_g")
        recovery: bool = True  # GSA's contour/mouth recovery
        vaa_features: str = "auto"  # recogniser of u_a's distances: arcface (paper) | sface | auto
        neighbors: int = 5  # k: size of the candidate set M_q
        epsilon: float = 5.0  # privacy budget of Eq. 6
        sensitivity: float = 1.0  # l1 sensitivity of u (u_a, u_g lie in [0, 1])
        pose_tolerance: float = 0.1  # GSA pose matching, distance of (yaw, pitch) proxies
        # -- step 2 ------------------------------------------------------------------------------------------
        synth: Literal["warp", "gan"] = "warp"
        checkpoint: str = ""  # synth=gan: the trained generator
        steps: int = 3  # warp: pixel-space IFA iterations
        lr: float = 0.005
        lambda_id: float = 1.0
        lambda_lpips: float = 1.0
        lambda_l1: float = 1.0
        delta_res: int = 64
        color_match: float = 1.0
        blend: Literal["seamless", "feather"] = "seamless"
        mirror: bool = True

        def validate(self) -> None:
            if self.psi not in _PSIS:
                raise ConfigError(f"method ours: psi must be one of {', '.join(_PSIS)}, got {self.psi!r}")
            if self.top_k < 1:
                raise ConfigError(f"method ours: top_k (K of Eq. 5) must be >= 1, got {self.top_k}")
            if self.class_weights and len(self.class_weights) != self.top_k:
                raise ConfigError(f"method ours: class_weights needs K = {self.top_k} values w_i, got "
                                  f"{len(self.class_weights)}")
            if self.diversity_j < 0:
                raise ConfigError(f"method ours: diversity_j must be >= 0, got {self.diversity_j}")
            if self.neighbors < 1:
                raise ConfigError(f"method ours: neighbors (k of M_q) must be >= 1, got {self.neighbors}")
            if self.epsilon < 0:
                raise ConfigError(f"method ours: epsilon must be >= 0, got {self.epsilon}")
            if self.sensitivity <= 0:
                raise ConfigError(f"method ours: sensitivity must be > 0, got {self.sensitivity}")
            if self.pose_tolerance < 0:
                raise ConfigError(f"method ours: pose_tolerance must be >= 0, got {self.pose_tolerance}")
            if self.codebook_scale <= 0:
                raise ConfigError(f"method ours: codebook_scale must be > 0, got {self.codebook_scale}")
            if self.synth == "gan" and not self.checkpoint:
                raise ConfigError("method ours: synth=gan needs checkpoint=PATH (a generator trained by `bench train`)")
            if self.checkpoint and not Path(self.checkpoint).expanduser().is_file():
                raise ConfigError(f"method ours: checkpoint {self.checkpoint} does not exist")
            if self.codebook != "pool" and not Path(self.codebook).expanduser().is_file():
                raise ConfigError(f"method ours: codebook must be 'pool' or an .npz file; {self.codebook} is neither")

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device=device, **options)
        from bench.methods.ours.vaa import resolve_feature_model, weights_present

        o = self.options
        # "auto" is resolved now, so the options recorded in the manifest (and the run's config hash) name the model
        psi = o.psi if o.psi != "auto" else ("facenet" if weights_present("facenet") else "sface")
        self.options = dataclasses.replace(o, psi=psi, vaa_features=resolve_feature_model(o.vaa_features))
        self._psi: Any = None
        self._synth: Any = None
        self._recognizer: Any = None
        self._setup_pool: FacePool | None = None
        self._state: _PoolState | None = None
        self._file_codebook: Any = None
        self._stats: dict[str, list[float]] = {}
        self.last_info: list[dict[str, Any]] = []  # per image of the last batch: delegates, draws, IFA classes

    # -- lazily built parts -------------------------------------------------------------------------------------
    @property
    def uses_psi(self) -> bool:
        return self.options.ifa != "off"

    def psi(self) -> Any:
        if self._psi is None:
            from bench.methods.ours.psi import Codebook, build_psi

            self._psi = build_psi(self.options.psi, self.device, scale=self.options.codebook_scale)
            if self.options.psi == "sface" and self.options.codebook != "pool":
                self._file_codebook = Codebook.load(self.options.codebook)
                self._psi.set_codebook(self._file_codebook)
        return self._psi

    def recognizer(self) -> Any:
        if self._recognizer is None:
            from bench.methods.ours.vaa import FeatureExtractor

            self._recognizer = FeatureExtractor(self.options.vaa_features, self.device)
        return self._recognizer

    def synthesizer(self) -> Any:
        if self._synth is None:
            o = self.options
            if o.synth == "gan":
                try:
                    from bench.methods.ours.gan.synth import GanSynthesizer
                except ModuleNotFoundError as exc:
                    raise ConfigError(f"method ours: synth=gan is not available here ({exc})") from None
                self._synth = GanSynthesizer(o.checkpoint, self.device)
            else:
                from bench.methods.ours.warp import WarpConfig, WarpSynthesizer

                cfg = WarpConfig(steps=o.steps, lr=o.lr, lambda_id=o.lambda_id, lambda_lpips=o.lambda_lpips,
                                 lambda_l1=o.lambda_l1, delta_res=o.delta_res, color_match=o.color_match,
                                 blend=o.blend, mirror=o.mirror)
                self._synth = WarpSynthesizer(cfg, self.device)
        return self._synth

    def setup(self, context: dict[str, Any]) -> None:
        self._setup_pool = context.get("pool")
        self.synthesizer()
        if self.uses_psi:
            self.psi()
        if self._setup_pool is not None:
            self._pool_state(self._setup_pool)

    def _pool_state(self, pool: FacePool) -> _PoolState:
        if self._state is not None and self._state.pool is pool:
            return self._state
        from bench.methods.ours.gsa import GeometryIndex
        from bench.methods.ours.psi import Codebook

        o = self.options
        if len(pool) == 0:
            raise ConfigError("method ours: the delegate pool is empty")
        feats = self.recognizer()(pool.images, pool.landmarks5) if o.vaa != "off" else None
        geometry = None
        if o.gsa != "off":
            if pool.landmarks68 is None:
                raise ConfigError("method ours: GSA needs 68-point landmarks of the pool faces (pipeline landmarks68)")
            geometry = GeometryIndex.build(pool.landmarks68)
        built = False
        if self.uses_psi and o.psi == "sface" and o.codebook == "pool":
            emb = feats if feats is not None and o.vaa_features == "sface" else self._psi_pool_embeddings(pool)
            self.psi().set_codebook(Codebook.from_embeddings(emb, list(pool.identities),
                                                             f"delegate pool: {pool.source or 'unnamed'} "
                                                             f"({len(pool)} faces)"))
            built = True
        self._state = _PoolState(pool, feats, geometry, built)
        log.info("ours: pool of %d faces (%d identities) ready", len(pool), len(set(pool.identities)))
        return self._state

    def _psi_pool_embeddings(self, pool: FacePool) -> np.ndarray:
        from bench.methods.ours.vaa import FeatureExtractor

        return FeatureExtractor("sface", self.device)(pool.images, pool.landmarks5)

    # -- step 1 + step 2 per image ------------------------------------------------------------------------------
    def anonymize(self, batch: FaceBatch) -> MethodResult:
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
        failures: dict[int, str] = {}
        self.last_info: list[dict[str, Any]] = []
        for i in range(n):
            try:
                images[i], ex = self._one(batch, i, state)
            except _NoDelegate as exc:
                failures[i] = str(exc)
                continue
            for k, v in ex.items():
                extras[k][i] = v
        return MethodResult(images, failures, extras)

    def _one(self, batch: FaceBatch, i: int, state: _PoolState) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        import torch

        from bench.methods.ours import gsa as G
        from bench.methods.ours.ifa import run_ifa
        from bench.methods.ours.ipd import eligible_mask, ipd_draw
        from bench.methods.ours.shapes import normalize_shapes, pose_features
        from bench.methods.ours.step import Step1Output
        from bench.methods.ours.vaa import appearance_utility, l2_distances

        o = self.options
        pool = state.pool
        rng = batch.rng(i)
        x = batch.images[i]
        lm5 = batch.landmarks5[i].astype(np.float64)
        lm68 = batch.landmarks68[i].astype(np.float64)  # type: ignore[index]
        eligible = eligible_mask(pool.identities, batch.identities[i], pool.keys, batch.keys[i])
        if not eligible.any():
            raise _NoDelegate(f"the delegate pool ({len(pool)} faces) has no face of another identity")
        info: dict[str, Any] = {"key": batch.keys[i]}
        self.last_info.append(info)
        dev = self.device
        xt = torch.from_numpy(x).to(dev).permute(2, 0, 1)[None].float() / 255.0
        extras: dict[str, np.ndarray] = {}

        # IFA (Eq. 1-5)
        z_id = None
        psi = None
        if self.uses_psi:
            psi = self.psi()
            labels = psi.class_labels()
            allowed = None if labels is None else np.asarray([lab != str(batch.identities[i]) for lab in labels])
            if allowed is not None and not allowed.any():
                raise _NoDelegate("IFA: the codebook holds only the query's own identity")
            res = run_ifa(psi, psi.align(xt, lm5[None]), k=o.top_k, weights=o.class_weights, choice=o.ifa,
                          allowed=allowed, diversity_j=o.diversity_j, diversity_weight=o.diversity_weight, rng=rng)
            z_id = res.z_id[None]
            info["ifa_classes"] = res.classes if labels is None else [labels[c] for c in res.classes]
            self._note("ifa_cos_f_fhat", res.cosine)
            self._note("ifa_residual_c1", res.residuals[0])
            extras["cam_H"], extras["cam_H_hat"] = _cam_overlays(x, lm5, psi, res.heatmap, res.heatmap_hat)

        # VAA (Eq. 6-7)
        if o.vaa != "off":
            assert state.vaa_features is not None
            q = self.recognizer()(x[None], lm5[None])[0]
            d = l2_distances(q, state.vaa_features)
            draw = ipd_draw(d, eligible, o.neighbors, o.epsilon, o.sensitivity,
                            appearance_utility if o.use_ua else None, rng, strategy=o.vaa)
            z_a, z_a_lm = pool.images[draw.index], np.asarray(pool.landmarks68[draw.index], np.float64)  # type: ignore[index]
            info.update(vaa_delegate=pool.keys[draw.index], vaa_delegate_identity=pool.identities[draw.index],
                        vaa_draw=draw.as_info())
        else:
            z_a, z_a_lm = x, lm68

        # GSA (Eq. 6, 8, recovery)
        if o.gsa != "off":
            qn = normalize_shapes(lm68)
            matched = G.pose_matched(pose_features(qn), state.geometry.poses, eligible, o.pose_tolerance)
            d = G.shape_distances(qn, state.geometry.normalized)
            draw = ipd_draw(d, matched, o.neighbors, o.epsilon, o.sensitivity,
                            G.geometry_utility if o.use_ug else None, rng, strategy=o.gsa)
            s_tilde = G.align_delegate(np.asarray(pool.landmarks68[draw.index], np.float64), lm68)  # type: ignore[index]
            s_hat = G.recover(s_tilde, lm68) if o.recovery else s_tilde
            info.update(gsa_delegate=pool.keys[draw.index], gsa_delegate_identity=pool.identities[draw.index],
                        gsa_draw=draw.as_info())
        else:
            s_hat = lm68

        mask = batch.masks[i] if batch.masks is not None else np.ones((batch.size, batch.size), bool)
        step1 = Step1Output(
            x=xt,
            mask=torch.from_numpy(mask.astype(np.float32)).to(dev)[None, None],
            landmarks68=torch.from_numpy(lm68.astype(np.float32)).to(dev)[None],
            z_id=z_id,
            z_a=torch.from_numpy(np.ascontiguousarray(z_a)).to(dev).permute(2, 0, 1)[None].float() / 255.0,
            z_a_landmarks68=torch.from_numpy(z_a_lm.astype(np.float32)).to(dev)[None],
            s_hat=torch.from_numpy(s_hat.astype(np.float32)).to(dev)[None],
            psi=psi,
        )
        y = self.synthesizer()(step1, batch.torch_generator(i, device=dev))
        out = np.ascontiguousarray((y[0].detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
                                   .permute(1, 2, 0).cpu().numpy())
        for warp_info in step1.info.get("warp", []):
            if "cos_before" in warp_info:
                self._note("warp_cos_before", warp_info["cos_before"])
                self._note("warp_cos_after", warp_info["cos_after"])
            extras["warped"] = warp_info["blended"]
        extras["delegate_appearance"] = np.ascontiguousarray(z_a)
        extras["geometry"] = _draw_geometry(x, lm68, s_hat)
        return out, extras

    def _note(self, key: str, value: float) -> None:
        self._stats.setdefault(key, []).append(float(value))

    # -- manifest -----------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        out = super().describe()
        o = self.options
        out.update({
            "paper": "Kuang et al., Facial Identity Anonymization via Intrinsic and Extrinsic Attention Distraction, "
                     "CVPR 2024",
            "psi": self._psi.describe() if self._psi is not None else {"name": o.psi if self.uses_psi else None},
            "white_box_recognizers": [o.psi] if self.uses_psi else [],
            "K": o.top_k if self.uses_psi else 0,
            "w_i": list(o.class_weights) or ([1.0] * o.top_k if self.uses_psi else []),
            "ifa_classes": {"topk": "top-K predictions (paper)", "rand": "K random codebook classes (IFA-Rand)",
                            "kfn": "K lowest-scoring classes (IFA-KFN)", "off": "no IFA"}[o.ifa],
            "diversity_term": {"j": o.diversity_j, "weight": o.diversity_weight} if o.diversity_j else None,
            "epsilon": o.epsilon,
            "k": o.neighbors,
            "sensitivity": o.sensitivity,
            "vaa": {"strategy": o.vaa, "features": o.vaa_features if o.vaa != "off" else None,
                    "feature_path": self._recognizer.path if self._recognizer is not None else None,
                    "utility": "Eq. 7" if o.use_ua else "uniform over M_q"},
            "gsa": {"strategy": o.gsa, "utility": "Eq. 8" if o.use_ug else "uniform over M_q",
                    "recovery": o.recovery, "pose_tolerance": o.pose_tolerance},
            "synthesizer": self._synth.describe() if self._synth is not None and hasattr(self._synth, "describe")
            else {"name": o.synth},
        })
        pool = self._state.pool if self._state is not None else self._setup_pool
        if pool is not None:
            out["pool"] = {"source": pool.source, "size": len(pool), "identities": len(set(pool.identities)),
                           "content_hash": pool.content_hash}
        if self._stats:
            out["diagnostics"] = {k: {"mean": float(np.mean(v)), "n": len(v)} for k, v in sorted(self._stats.items())}
        return out


def _cam_overlays(x: np.ndarray, lm5: np.ndarray, psi: Any, heat: np.ndarray, heat_hat: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """H and H-hat (Figure 7) drawn over the crop: both scaled by max(H), so a distracted H-hat shows as darker."""
    import cv2

    from bench.face.align import estimate_similarity

    size = x.shape[0]
    m = estimate_similarity(lm5, psi.template_points)  # crop -> Psi input
    scale = float(heat.max()) or 1.0
    out = []
    for h in (heat, heat_hat):
        up = cv2.resize((h / scale).astype(np.float32), (psi.input_size, psi.input_size), interpolation=cv2.INTER_CUBIC)
        back = cv2.warpAffine(np.clip(up, 0, 1), m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        colour = cv2.cvtColor(cv2.applyColorMap((back * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        out.append(np.clip(0.5 * x + 0.5 * colour + 0.5, 0, 255).astype(np.uint8))
    return out[0], out[1]


def _draw_geometry(x: np.ndarray, s_x: np.ndarray, s_hat: np.ndarray) -> np.ndarray:
    """x with its landmarks S_x (green) and the anonymised geometry S-hat (red)."""
    import cv2

    canvas = np.ascontiguousarray(x.copy())
    for pts, colour in ((s_x, (0, 200, 0)), (s_hat, (230, 30, 30))):
        for px, py in np.round(pts).astype(int):
            cv2.circle(canvas, (int(px), int(py)), 1, colour, -1)
    return canvas

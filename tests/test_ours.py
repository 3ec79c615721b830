"""The attention-distraction anonymiser ("ours", Kuang et al. CVPR 2024): IFA (Eq. 1-5), IPD (Eq. 6), VAA (Eq. 7),
GSA (Eq. 8 + recovery), the warp synthesiser, and the method end to end on the demo faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from bench.errors import ConfigError
from bench.methods import METHODS
from bench.methods.ours import gsa as G
from bench.methods.ours.config import IFAOptions
from bench.methods.ours.ifa import distract, gradcam_alphas, run_ifa, select_classes
from bench.methods.ours.ipd import eligible_mask, exponential_mechanism, ipd_draw
from bench.methods.ours.nets import similarity_theta
from bench.methods.ours.psi import LinearHead, Psi, build_psi, psi_from_module
from bench.methods.ours.shapes import MIRROR_68, five_from_68, mirror_landmarks, normalize_shapes, pose_features
from bench.methods.ours.vaa import appearance_utility, l2_distances
from bench.methods.ours.warp import piecewise_affine_warp
from bench.types import FacePool


# -- IFA: Eq. 1-5 ---------------------------------------------------------------------------------------------------
def _ortho_residual(alpha: torch.Tensor, a: torch.Tensor, a_hat: torch.Tensor) -> float:
    """sum_kl |alpha . A-hat| / sum_kl |alpha . A| for one (C,) or (C, h, w) alpha and (C, h, w) maps."""
    al = alpha if alpha.dim() == 3 else alpha[:, None, None]
    return float((al * a_hat).sum(0).abs().sum() / (al * a).sum(0).abs().sum())


def test_distract_k1_zeroes_the_cam_exactly():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 256, 7, 7, generator=g, dtype=torch.float64) * 3
    alpha = torch.randn(1, 1, 256, 1, 1, generator=g, dtype=torch.float64)
    a_hat = distract(a, alpha, torch.ones(1, 1, dtype=torch.float64))
    assert _ortho_residual(alpha[0, 0, :, 0, 0], a[0], a_hat[0]) < 1e-12  # alpha^{c} A-hat = 0 (Eq. 3)
    # xi = alpha^T Phi with Phi = -(alpha A) / (alpha alpha^T) (Eq. 4): the change lies along alpha at every pixel
    al = alpha[0, 0, :, 0, 0]
    phi = -torch.einsum("c,chw->hw", al, a[0]) / al.dot(al)
    torch.testing.assert_close(a_hat[0] - a[0], al[:, None, None] * phi[None])


def test_distract_sum_is_eq5_and_orthogonal_zeroes_every_class():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 32, 5, 5, generator=g, dtype=torch.float64)
    shared = torch.randn(32, generator=g, dtype=torch.float64)
    alphas = shared + 0.8 * torch.randn(4, 32, generator=g, dtype=torch.float64)  # correlated, as on SFace
    w = torch.tensor([[0.5, 1.0, 2.0, 1.0]], dtype=torch.float64)
    expected = a[0].clone()
    for i in range(4):
        phi = -torch.einsum("c,chw->hw", alphas[i], a[0]) / alphas[i].dot(alphas[i])
        expected += w[0, i] * alphas[i][:, None, None] * phi[None]
    got = distract(a, alphas[None, :, :, None, None], w, orthogonal=False)
    torch.testing.assert_close(got[0], expected)  # combine=sum is Eq. 5 as printed
    ones = torch.ones(1, 4, dtype=torch.float64)
    summed = distract(a, alphas[None, :, :, None, None], ones, orthogonal=False)
    ortho = distract(a, alphas[None, :, :, None, None], ones, orthogonal=True)
    assert max(_ortho_residual(alphas[i], a[0], summed[0]) for i in range(4)) > 0.1  # Eq. 5 as printed overshoots
    assert max(_ortho_residual(alphas[i], a[0], ortho[0]) for i in range(4)) < 1e-10  # alpha^{c_i} A-hat = 0, all i
    # per-position alphas (HiResCAM): the constraint holds at every position
    pos = torch.randn(1, 3, 32, 5, 5, generator=g, dtype=torch.float64)
    a_hat = distract(a, pos, torch.ones(1, 3, dtype=torch.float64))
    for i in range(3):
        assert (pos[0, i] * a_hat[0]).sum(0).abs().max() < 1e-10
    # a class without gradient contributes nothing
    torch.testing.assert_close(distract(a, torch.zeros(1, 1, 32, 1, 1, dtype=torch.float64),
                                        torch.ones(1, 1, dtype=torch.float64)), a)


class _GapNet(nn.Module):
    """conv -> ReLU (A) -> global average pool -> linear embedding: the network Grad-CAM's Eq. 2 assumes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.last = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.emb = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(self.pool(self.last(torch.relu(self.conv1(x)))).flatten(1))


class _FlatNet(nn.Module):
    """conv -> PReLU (A) -> BN -> flatten -> linear -> BN1d: SFace's tail (no global pool)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.act = nn.PReLU(16)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 8 * 8, 12)
        self.bn1 = nn.BatchNorm1d(12)
        for bn in (self.bn, self.bn1):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.fc(self.bn(self.act(self.conv2(torch.relu(self.conv1(x))))).flatten(1)))


def _toy_psi(net: nn.Module, n_classes: int = 6, dim: int = 16) -> Psi:
    from bench.face.align import template

    torch.manual_seed(2)
    head = nn.Linear(dim, n_classes)
    return psi_from_module(net, name="toy", template_points=template("arcface112", 32), input_size=32, head=head)


def test_feature_map_is_found_and_alpha_auto_follows_the_pooling():
    gap, flat = _toy_psi(_GapNet()), _toy_psi(_FlatNet(), dim=12)
    assert gap.layer == "last" and flat.layer == "act"  # the last spatial map, skipping BatchNorm
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert run_ifa(gap, x, IFAOptions(top_k=2)).alpha_mode == "mean"
    assert run_ifa(flat, x, IFAOptions(top_k=2)).alpha_mode == "position"


def test_gradcam_alphas_of_a_pooled_network_are_eq2():
    psi = _toy_psi(_GapNet())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.enable_grad():
        out = psi.forward(x, mode="capture")
        grads = gradcam_alphas(out.a, out.logits, torch.tensor([[0, 3]]))
    # Eq. 2 by hand: alpha^c_j = (1/Z) sum_kl dy^c/dA^j_kl; for a GAP + linear head dy^c/dA^j_kl = (W_c M)_j / Z
    z = out.a.shape[-1] * out.a.shape[-2]
    direct = (psi.head.weight @ psi.module.emb.weight)[[0, 3]] / z
    torch.testing.assert_close(grads[0].mean(dim=(2, 3)), direct, rtol=1e-5, atol=1e-7)
    assert float((grads - grads.mean(dim=(3, 4), keepdim=True)).abs().max()) < 1e-7  # the same at every position


@pytest.mark.parametrize("net, dim", [(_GapNet, 16), (_FlatNet, 12)])
def test_ifa_removes_the_class_evidence_through_the_network(net, dim):
    psi = _toy_psi(net(), dim=dim)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    res = run_ifa(psi, x, IFAOptions(top_k=3))
    assert np.nanmax(res.residuals) < 1e-4  # alpha^{c_i} A-hat = 0 for every i <= K (orthogonalised alphas)
    with torch.no_grad():
        before = psi.forward(x).logits
        a = psi.forward(x, mode="capture").a
        base = psi.forward(x, mode="replace", replacement=torch.zeros_like(a)).logits  # y^c with no evidence from A
    for b in range(3):
        assert res.classes[b] == [int(c) for c in torch.argsort(before[b], descending=True)[:3]]
        # the tail after A is affine, so each distracted class falls to its score at A = 0
        np.testing.assert_allclose(res.score_drop[b], (before[b] - base[b])[res.classes[b]].numpy(), atol=1e-4)
    assert np.all(res.heatmap >= 0) and res.heatmap_hat.max() <= 1e-4 * max(res.heatmap.max(), 1e-6) + 1e-6
    assert np.all(res.cosine < 1.0) and res.z_id.shape == (3, dim)
    torch.testing.assert_close(res.removed.norm(dim=1), torch.ones(3))
    # images of a batch are independent: the same result one by one
    one = run_ifa(psi, x[1:2], IFAOptions(top_k=3))
    torch.testing.assert_close(one.z_id[0], res.z_id[1], atol=1e-5, rtol=1e-5)


def test_ifa_class_choices_and_diversity_term():
    scores = np.array([5.0, 1.0, 4.0, -2.0, 3.0, 0.0])
    allowed = np.array([True, True, False, True, True, True])
    assert select_classes(scores, allowed, 2, "topk", None) == [0, 4]
    assert select_classes(scores, allowed, 2, "kfn", None) == [3, 5]
    a = select_classes(scores, allowed, 3, "rand", np.random.default_rng(7))
    assert a == select_classes(scores, allowed, 3, "rand", np.random.default_rng(7))
    assert len(set(a)) == 3 and 2 not in a
    assert select_classes(scores, allowed, 99, "topk", None) == [0, 4, 1, 5, 3]  # K capped at the allowed classes
    psi = _toy_psi(_GapNet())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    res = run_ifa(psi, x, IFAOptions(top_k=2, diversity_j=1, diversity_weight=0.5))
    with torch.no_grad():
        logits = psi.forward(x).logits[0].numpy()
    assert res.classes[0][-1] == int(np.argmin(logits)) and res.weights[0] == [1.0, 1.0, 0.5]
    top = int(np.argmax(logits))
    allowed = np.ones((1, 6), bool)
    allowed[0, top] = False  # e.g. the query's own identity in the codebook
    masked = run_ifa(psi, x, IFAOptions(top_k=1), allowed=allowed)
    assert masked.classes[0][0] != top and masked.residuals[0, 0] < 1e-4


def test_linear_head_fit_save_load(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 3
    ids = [f"p{i}" for i in range(4) for _ in range(10)]
    raw = np.repeat(centres, 10, axis=0) + rng.normal(size=(40, 8)) * 0.3 + 5.0  # raw features, not centred
    head = LinearHead.fit(raw, ids, l2=1e-3, provenance={"source": "test"})
    assert head.labels == ["p0", "p1", "p2", "p3"] and head.provenance["train_accuracy"] == 1.0
    assert head.provenance["source"] == "test" and head.provenance["n_classes"] == 4
    again = LinearHead.fit(raw, ids, l2=1e-3)  # convex, from zero: no seed, same head
    np.testing.assert_allclose(again.weight, head.weight, atol=1e-6)
    head.save(tmp_path / "head.npz")
    back = LinearHead.load(tmp_path / "head.npz")
    assert back.labels == head.labels and np.allclose(back.weight, head.weight) and back.provenance["source"] == "test"
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="bad.npz"):
        LinearHead.load(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match=">= 2 identities"):
        LinearHead.fit(raw[:5], ["a"] * 5)


def test_facenet_psi_keeps_its_own_classes(monkeypatch):
    """build_psi("facenet") on stand-in weights: FaceNet's logits head, A = block8 (mean alpha: it pools)."""
    from facenet_pytorch import InceptionResnetV1

    from bench.face.align import template
    from bench.methods.ours import nets
    from bench.models.base import input_adapter
    from bench.models.facenet import _embedding_module

    torch.manual_seed(0)
    net = InceptionResnetV1(classify=True, num_classes=20).eval()  # random stand-in weights; real ones need a download

    class _StandIn:  # the FaceNet recogniser's interface
        name, input_size, weight_files = "facenet", 160, {}

        def network(self):
            return net

        def classifier_module(self):
            return input_adapter(net, mean=127.5, std=128.0)

        def torch_module(self):
            return input_adapter(_embedding_module(net), mean=127.5, std=128.0)

        def template_points(self):
            return template("facenet160", 160)

    monkeypatch.setattr(nets, "get_recognizer", lambda name, device: _StandIn())
    psi = build_psi("facenet")
    assert psi.layer == "net.backbone.block8" and psi.n_classes == 20 and psi.class_labels() is None
    crops = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    aligned = psi.align(crops, np.stack([template("crop", 256)] * 2))
    res = run_ifa(psi, aligned, IFAOptions(top_k=2))
    assert res.alpha_mode == "mean" and np.nanmax(res.residuals) < 1e-4 and res.z_id.shape == (2, 512)
    assert res.heatmap.shape == (2, 3, 3)  # block8 is 1792 x 3 x 3 at 160 px


def test_an_arcface_network_as_psi_with_a_pool_head():
    """An IResNet (ArcFace's architecture, stand-in weights): A = layer4, no global pool -> per-position alphas."""
    from bench.face.align import template
    from bench.models.arcface import iresnet
    from bench.models.base import input_adapter

    torch.manual_seed(0)
    net = input_adapter(iresnet(18, num_features=64), mean=127.5, std=127.5)
    psi = psi_from_module(net, name="arcface", template_points=template("arcface112", 112), input_size=112)
    assert psi.layer == "net.layer4"
    x = torch.rand(6, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = psi.raw_features(x).numpy()
    psi.set_head(LinearHead.fit(raw, ["a", "a", "b", "b", "c", "c"]))
    res = run_ifa(psi, x[:2], IFAOptions(top_k=2))
    assert res.alpha_mode == "position" and np.nanmax(res.residuals) < 1e-3 and res.z_id.shape == (2, 64)


def test_alignment_grid_matches_cv2_warp():
    import cv2

    from bench.face.align import estimate_similarity, template

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 4)
    lm = template("crop", 256) + rng.normal(0, 2, (5, 2))
    m = estimate_similarity(lm, template("arcface112", 112))
    ref = cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_LINEAR)
    theta = torch.from_numpy(similarity_theta(m, 256, 112)).float()[None]
    grid = torch.nn.functional.affine_grid(theta, [1, 3, 112, 112], align_corners=False)
    out = torch.nn.functional.grid_sample(torch.from_numpy(img).permute(2, 0, 1)[None], grid, align_corners=False)
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy()[4:-4, 4:-4], ref[4:-4, 4:-4], atol=2e-3)


# -- IPD: Eq. 6, VAA: Eq. 7, GSA: Eq. 8 -----------------------------------------------------------------------------
def test_utilities_lie_in_unit_interval_with_the_stated_extremes():
    d = np.array([0.7, 0.2, 1.3, 0.9, 0.2])
    ua, ug = appearance_utility(d), G.geometry_utility(d)
    assert ua.min() >= 0 and ua.max() <= 1 and ug.min() >= 0 and ug.max() <= 1
    assert ua[1] == ua[4] == 1.0 and ua[2] == 0.0  # nearest -> 1, farthest -> 0 (Eq. 7)
    assert ug[1] == ug[4] == 0.0 and ug[2] == 1.0  # nearest -> 0, farthest -> 1 (Eq. 8)
    np.testing.assert_allclose(ua + ug, 1.0)
    np.testing.assert_array_equal(appearance_utility(np.full(3, 0.4)), 1.0)  # 0/0: no preference
    np.testing.assert_array_equal(G.geometry_utility(np.full(3, 0.4)), 1.0)
    np.testing.assert_allclose(l2_distances(np.zeros(2), np.array([[3.0, 4.0], [0.0, 1.0]])), [5.0, 1.0])


def test_exponential_mechanism_matches_eq6():
    u = np.array([1.0, 0.5, 0.0, 0.25])
    for eps, du in ((1.0, 1.0), (5.0, 1.0), (10.0, 2.0)):
        p = exponential_mechanism(u, eps, du)
        expected = np.exp(eps * u / (2 * du)) / np.exp(eps * u / (2 * du)).sum()
        np.testing.assert_allclose(p, expected, rtol=1e-12)
    np.testing.assert_allclose(exponential_mechanism(u, 0.0), 0.25)
    np.testing.assert_allclose(exponential_mechanism(u, np.inf), [1, 0, 0, 0])
    with pytest.raises(ConfigError):
        exponential_mechanism(u, -1.0)


def test_ipd_frequencies_follow_eq6_chi_square():
    rng0 = np.random.default_rng(0)
    dist = rng0.random(30)
    eligible = np.ones(30, bool)
    eligible[[3, 7]] = False
    k, eps = 6, 4.0
    from bench.methods.ours.ipd import nearest

    cand = nearest(dist, eligible, k)
    expected = exponential_mechanism(appearance_utility(dist[cand]), eps, 1.0)
    n = 6000
    counts = {int(c): 0 for c in cand}
    for seed in range(n):
        draw = ipd_draw(dist, eligible, k, eps, 1.0, appearance_utility, np.random.default_rng(seed))
        counts[draw.index] += 1
    observed = np.array([counts[int(c)] for c in cand])
    assert observed.sum() == n
    p = stats.chisquare(observed, expected * n).pvalue
    assert p > 1e-3, (observed, expected * n)
    # the same seed gives the same delegate
    a = ipd_draw(dist, eligible, k, eps, 1.0, appearance_utility, np.random.default_rng(11)).index
    assert a == ipd_draw(dist, eligible, k, eps, 1.0, appearance_utility, np.random.default_rng(11)).index


def test_pool_never_yields_the_query_identity():
    rng = np.random.default_rng(1)
    ids = [f"p{i % 7}" for i in range(60)]
    keys = [f"k{i}" for i in range(60)]
    dist = rng.random(60)
    dist[np.asarray(ids) == "p3"] = 0.0  # the query's own photos are its nearest neighbours
    eligible = eligible_mask(ids, "p3", keys, "k10")
    assert not eligible[np.asarray(ids) == "p3"].any()
    for strategy in ("ipd", "rand", "kfn"):
        for seed in range(200):
            d = ipd_draw(dist, eligible, 5, 10.0, 1.0, appearance_utility, np.random.default_rng(seed), strategy)
            assert ids[d.index] != "p3" and all(ids[c] != "p3" for c in d.candidates)
    with pytest.raises(ValueError, match="another identity"):
        ipd_draw(dist, eligible_mask(["a"] * 60, "a"), 5, 1.0, 1.0, None, rng)


def test_shapes_helpers():
    rng = np.random.default_rng(2)
    lm = rng.random((68, 2)) * 200 + 20
    np.testing.assert_allclose(mirror_landmarks(mirror_landmarks(lm, 256), 256), lm)
    assert sorted(MIRROR_68.tolist()) == list(range(68))
    five = five_from_68(lm)
    np.testing.assert_allclose(five[0], lm[36:42].mean(0))
    np.testing.assert_allclose(five[4], lm[54])
    # similarity normalisation removes translation, rotation and scale
    theta = 0.4
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (lm @ rot.T) * 1.7 + 33
    np.testing.assert_allclose(normalize_shapes(moved), normalize_shapes(lm), atol=1e-9)
    np.testing.assert_allclose(pose_features(normalize_shapes(moved)), pose_features(normalize_shapes(lm)), atol=1e-9)


def _demo_shapes(face_batch) -> np.ndarray:
    return face_batch.landmarks68.astype(np.float64)


def test_gsa_recovery_keeps_contour_mouth_and_delegate_lip_thickness(face_batch):
    lms = _demo_shapes(face_batch)
    s_x, delegate = lms[0], lms[3]
    s_tilde = G.align_delegate(delegate, s_x)
    s_hat = G.recover(s_tilde, s_x)
    np.testing.assert_array_equal(s_hat[0:17], s_x[0:17])  # contour back to the original's
    np.testing.assert_allclose(s_hat[[48, 54]], s_x[[48, 54]])  # mouth corners
    np.testing.assert_allclose(s_hat[60:68], s_x[60:68])  # inner lips: the original opening (expression)
    np.testing.assert_allclose(s_hat[17:48], s_tilde[17:48])  # brows, nose, eyes: the delegate's
    up_t, lo_t = G.lip_thickness(s_tilde)
    up_h, lo_h = G.lip_thickness(s_hat)
    np.testing.assert_allclose(up_h, up_t, atol=1e-9)
    np.testing.assert_allclose(lo_h, lo_t, atol=1e-9)
    assert not np.allclose(G.lip_thickness(s_x)[0], up_t)  # the demo people really differ there


def test_gsa_pose_matching():
    poses = np.array([[0.0, 0.0], [0.05, 0.0], [0.5, 0.0], [-0.6, 0.1], [0.02, 0.01]])
    eligible = np.array([True, True, True, True, False])
    np.testing.assert_array_equal(G.pose_matched(np.zeros(2), poses, eligible, 0.1), [1, 1, 0, 0, 0])
    # none within tolerance: only the nearest in pose
    np.testing.assert_array_equal(G.pose_matched(np.array([0.45, 0.0]), poses, eligible, 0.01), [0, 0, 1, 0, 0])


def test_piecewise_affine_warp_reproduces_translations():
    rng = np.random.default_rng(3)
    img = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
    pts = np.array([[30, 30], [90, 28], [95, 95], [28, 92], [60, 60], [45, 75]], np.float64)
    same, covered = piecewise_affine_warp(img, pts, pts, 128)
    assert covered.sum() > 3000
    np.testing.assert_array_equal(same[covered], img[covered])
    shifted, covered = piecewise_affine_warp(img, pts, pts + [5, 3], 128)
    ys, xs = np.nonzero(covered)
    np.testing.assert_array_equal(shifted[ys, xs], img[ys - 3, xs - 5])


# -- the method end to end --------------------------------------------------------------------------------------------
def _pool(batch, identities=None) -> FacePool:
    ids = identities or [f"pool-{i}" for i in batch.identities]
    return FacePool(keys=[f"pool/{k}" for k in batch.keys], identities=ids, images=batch.images.copy(),
                    landmarks5=batch.landmarks5.copy(), landmarks68=batch.landmarks68.copy(), source="demo test pool")


@pytest.fixture(scope="module")
def ours_method():
    return METHODS.build("ours", device="cpu", psi="sface", steps=2)


def test_ours_changes_the_face_not_the_background(ours_method, face_batch):
    from scipy.ndimage import binary_dilation

    from bench.face.mask import face_mask

    pool = _pool(face_batch, identities=list(face_batch.identities))  # holds the queries' own identities
    batch = face_batch.subset([0, 2])
    batch.extras["pool"] = pool
    ours_method.setup({"pool": pool, "seed": 0, "device": "cpu"})
    res = ours_method.anonymize(batch)
    assert not res.failures and res.images.dtype == np.uint8
    for i in range(len(batch)):
        region = face_mask(256, batch.landmarks5[i], batch.landmarks68[i], forehead=0.5)
        far = ~binary_dilation(region, iterations=24)
        np.testing.assert_array_equal(res.images[i][far], batch.images[i][far])
        inside = batch.masks[i]
        assert np.abs(res.images[i][inside].astype(int) - batch.images[i][inside].astype(int)).mean() > 8
    for name in ("cam_H", "cam_H_hat", "delegate_appearance", "geometry", "warped"):
        assert res.extras[name].shape == batch.images.shape
    # neither a delegate nor a distracted codebook class is ever of the query's own identity
    for info, qid in zip(ours_method.last_info, batch.identities, strict=True):
        assert info["vaa_delegate_identity"] != qid and info["gsa_delegate_identity"] != qid
        assert qid not in info["ifa_classes"] and len(info["ifa_classes"]) == 3
    # per-image diagnostics (the feature-space half of Figure 6)
    d = res.diagnostics
    assert set(d) >= {"ifa_cos_f_fx", "ifa_residual_c1", "ifa_residual_c3", "realise_cos_f_after", "realise_reverted"}
    assert np.all(d["ifa_cos_f_fx"] < 1) and np.nanmax([d[f"ifa_residual_c{k}"] for k in (1, 2, 3)]) < 1e-3
    assert np.all(d["realise_cos_f_after"] <= d["realise_cos_f_before"] + 1e-6)
    desc = json.loads(json.dumps(ours_method.describe()))
    for key in ("psi", "K", "w_i", "epsilon", "k", "synthesizer", "pool", "white_box_recognizers"):
        assert key in desc
    assert desc["white_box_recognizers"] == ["sface"] and desc["K"] == 3 and desc["w_i"] == [1.0, 1.0, 1.0]
    assert desc["psi"]["codebook"]["n_classes"] == len(set(pool.identities))
    assert desc["psi"]["codebook"]["pool_size"] == len(pool) and desc["psi"]["layer"] == "net.conv_14_relu"
    assert desc["options"]["ifa"]["top_k"] == 3 and desc["options"]["synth"]["steps"] == 2
    assert desc["synthesizer"]["name"] == "warp"
    assert desc["diagnostics"]["ifa_residual_c1"]["n"] == 2


def test_pool_head_is_cached_and_reused(face_batch, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    pool = _pool(face_batch)
    m = METHODS.build("ours", psi="sface", steps=0)
    m.setup({"pool": pool, "seed": 0})
    files = list((tmp_path / "ours-heads").glob("*.npz"))
    assert len(files) == 1
    m2 = METHODS.build("ours", psi="sface", steps=0)
    m2.setup({"pool": pool, "seed": 0})
    assert list((tmp_path / "ours-heads").glob("*.npz")) == files
    np.testing.assert_array_equal(m2.psi().head.weight.numpy(), m.psi().head.weight.numpy())
    head = LinearHead.load(files[0])
    assert head.provenance["pool_content_hash"] and head.provenance["psi"] == "sface"
    m3 = METHODS.build("ours", psi="sface", steps=0, codebook=str(files[0]))  # a named head file
    m3.setup({"pool": pool, "seed": 0})
    assert m3.psi().class_labels() == head.labels


def test_pool_features_are_cached_by_what_psi_sees(face_batch, tmp_path, monkeypatch):
    from bench.methods.ours.method import Ours

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    computed = []
    real = Ours._compute_pool_raw_features
    monkeypatch.setattr(Ours, "_compute_pool_raw_features",
                        lambda self, pool, mirrored: computed.append(mirrored) or real(self, pool, mirrored))
    pool = _pool(face_batch)
    m = METHODS.build("ours", psi="sface", steps=0)
    m.setup({"pool": pool, "seed": 0})
    assert sorted(computed) == [False, True]  # the faces and their mirror images (codebook head), once each
    files = sorted((tmp_path / "ours-features").glob("*.npy"))
    assert len(files) == 2
    m2 = METHODS.build("ours", psi="sface", steps=0)
    m2.setup({"pool": pool, "seed": 0})  # head and VAA features come from the caches: Psi never runs on the pool
    assert len(computed) == 2
    np.testing.assert_array_equal(m2._state.vaa_features, m._state.vaa_features)
    for f in files:  # a damaged entry is recomputed and rewritten
        f.write_bytes(b"not a numpy file")
    m3 = METHODS.build("ours", psi="sface", steps=0)
    m3.setup({"pool": pool, "seed": 0})
    assert computed[2:] == [False]  # the head is still cached; only the VAA features were needed
    rewritten = []
    for f in files:
        try:
            rewritten.append(np.load(f).shape)
        except ValueError:
            pass
    assert rewritten == [(len(pool), m._state.vaa_features.shape[1])]
    np.testing.assert_allclose(m3._state.vaa_features, m._state.vaa_features)
    # other crops under the same keys (another detector or crop size) are other features: a new entry
    shifted = _pool(face_batch)
    shifted.images = np.roll(shifted.images, 3, axis=2)
    m4 = METHODS.build("ours", psi="sface", steps=0)
    m4.setup({"pool": shifted, "seed": 0})
    assert len(computed) == 5 and len(list((tmp_path / "ours-features").glob("*.npy"))) == 4


def test_realisation_never_increases_similarity_to_x(face_batch):
    """On a held-in batch of real photos: cos(Psi(y), f) after the realisation <= before, image by image."""
    import torch

    from bench.methods.ours.config import SynthOptions
    from bench.methods.ours.realise import Realiser

    m = METHODS.build("ours", psi="sface", steps=0)
    pool = _pool(face_batch)
    m.setup({"pool": pool, "seed": 0})
    psi = m.psi()
    batch = face_batch.subset(list(range(6)))
    x = torch.from_numpy(batch.images).permute(0, 3, 1, 2).float() / 255
    res = run_ifa(psi, psi.align(x, batch.landmarks5), IFAOptions(top_k=3))
    y0 = x.roll(1, dims=0)  # a render that is not x: the next person's face
    face = torch.from_numpy(batch.masks.astype(np.float32))[:, None]
    gens = [batch.torch_generator(i) for i in range(len(batch))]
    # the method's objective, and one that pulls towards x (r = -f, margin 1) which only the final check stops
    cases = ((SynthOptions(steps=3), res.removed), (SynthOptions(steps=3, margin=1.0, lr=0.05, lambda_lpips=0, lambda_l1=0), -res.f))
    for opts, r in cases:
        out = Realiser(opts)(psi, y0, face, batch.landmarks5, res.f, r, gens)
        with torch.no_grad():
            after = (psi.embed(out.images, batch.landmarks5) * res.f).sum(1).numpy()
            before = (psi.embed(y0, batch.landmarks5) * res.f).sum(1).numpy()
        assert np.all(after <= before + 1e-5), (after, before)
        np.testing.assert_allclose(out.cos_f_after, after, atol=1e-5)
    assert out.reverted.all()  # pulled towards x: every render was kept


def test_ours_seeds_and_a_pool_of_one_identity(face_batch):
    m = METHODS.build("ours-no-ifa", device="cpu", epsilon=0)  # epsilon 0: uniform over the 5 members of M_q
    batch = face_batch.subset([1])
    pool = _pool(face_batch)
    m.setup({"pool": pool, "seed": 0, "device": "cpu"})
    batch.extras["pool"] = pool
    a = m.anonymize(batch).images
    np.testing.assert_array_equal(a, m.anonymize(batch).images)
    outs, delegates = set(), set()
    for s in range(10):  # other seeds draw other delegates
        batch.seeds = [1000 + s]
        outs.add(m.anonymize(batch).images.tobytes())
        delegates.add(m.last_info[0]["vaa_delegate"])
        assert len(m.last_info[0]["vaa_draw"]["candidates"]) == 5
    assert len(delegates) > 1 and len(outs) > 1
    lonely = _pool(face_batch, identities=[batch.identities[0]] * len(face_batch))
    batch.extras["pool"] = lonely
    res = m.anonymize(batch)
    assert res.failures and "another identity" in res.failures[0]


def test_outputs_do_not_depend_on_the_batch(ours_method, face_batch):
    pool = _pool(face_batch)
    ours_method.setup({"pool": pool, "seed": 0})
    both = face_batch.subset([3, 5])
    both.extras["pool"] = pool
    alone = face_batch.subset([5])
    alone.extras["pool"] = pool
    a, b = ours_method.anonymize(both).images[1], ours_method.anonymize(alone).images[0]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # float rounding of batched kernels only


def test_ablation_variants_are_option_sets():
    assert METHODS.build("ours-no-ifa").options.ifa.mode == "off"
    assert METHODS.build("ours-no-vaa").options.vca.vaa == "off"
    assert METHODS.build("ours-no-gsa").options.vca.gsa == "off"
    assert METHODS.build("ours-ifa-kfn").options.ifa.mode == "kfn"
    assert METHODS.build("ours-gsa-rand").options.vca.gsa == "rand"
    assert not METHODS.build("ours-no-ua").options.vca.use_ua and not METHODS.build("ours-no-ug").options.vca.use_ug
    assert [METHODS.build(f"ours-k{k}").options.ifa.top_k for k in range(1, 11)] == list(range(1, 11))
    assert METHODS.build("ours-eps0.5").options.vca.epsilon == 0.5
    assert METHODS.build("ours-div-j2").options.ifa.diversity_j == 2
    assert METHODS.build("ours").options.ifa.psi in ("sface", "facenet")  # "auto" is resolved at construction
    # dotted paths and bare leaf names; a user's key overrides a variant's default
    assert METHODS.build("ours-k5", **{"ifa.top_k": "2"}).options.ifa.top_k == 2
    assert METHODS.build("ours", top_k="4", steps="0").options.synth.steps == 0
    assert METHODS.build("ours", synth="warp").options.synth.kind == "warp"


def test_white_box_models_name_every_recogniser_the_method_uses():
    assert METHODS.build("ours", psi="sface").white_box_models() == {"sface"}
    assert METHODS.build("ours-no-ifa", vaa_features="sface").white_box_models() == {"sface"}
    assert METHODS.build("ours-no-ifa", vaa="off").white_box_models() == frozenset()
    assert METHODS.build("ours", psi="sface", vaa_features="dlib").white_box_models() == {"sface", "dlib"}


@pytest.mark.parametrize("options, match", [
    ({"psi": "vgg"}, "not a registered recogniser"),
    ({"vaa_features": "yunet"}, "not a registered recogniser"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 2, "class_weights": "1,2,3"}, "class_weights"),
    ({"top_k": "2.5"}, "whole number"),
    ({"epsilon": -1}, "epsilon"),
    ({"synth": "gan"}, "checkpoint"),
    ({"codebook": "/nonexistent/head.npz"}, "codebook"),
    ({"jpeg": "90,50"}, "jpeg"),
    ({"scale": 1}, "no option 'scale'"),
])
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        METHODS.build("ours", **options)


def test_psi_without_a_torch_module_is_refused(monkeypatch):
    from bench.methods.ours import nets

    class NoGradients:  # a recogniser that only embeds (an ONNX or C++ backend): no torch_module()
        name = "opaque"

    monkeypatch.setattr(nets, "get_recognizer", lambda name, device: NoGradients())
    with pytest.raises(ConfigError, match="'opaque' has no differentiable torch module"):
        build_psi("opaque")


@pytest.mark.slow
def test_bench_run_ours_on_demo_marks_white_box_records(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from bench.cli import cli

    res = CliRunner().invoke(cli, ["run", "--method", "ours", "--dataset", "demo", "--out", str(tmp_path), "--quiet",
                                   "--metrics", "reid,ssim", "--recognizers", "sface,dlib", "--save-images",
                                   "--device", "cpu", "--method-arg", "steps=1", "--bootstrap", "20"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    manifest_path = next(tmp_path.rglob("manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["summary"]["ok"] == manifest["summary"]["images"] == 8
    method = manifest["method"]
    assert method["pool"]["size"] == 8 and method["psi"]["codebook"]["n_classes"] == 8
    assert manifest["white_box_models"] == ["sface"]
    records = pd.read_csv(manifest_path.parent / "records.csv")
    reid = records[records.metric == "reid"]
    assert reid[reid.model == "sface"].white_box.all() and not reid[reid.model == "dlib"].white_box.any()
    assert "†" in res.output  # the summary table marks the white-box recogniser
    assert len(list((manifest_path.parent / "images" / "cam_H").rglob("*.png"))) == 8


def test_benchmark_method_command(tmp_path):
    from click.testing import CliRunner

    from bench.benchmarks import benchmark

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(benchmark, ["method", "-m", "ours-no-ifa", "--limit", "3", "--batch-size", "2",
                                         "--json", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "images/s" in res.output and "peak RSS" in res.output
    figures = json.loads(out.read_text())
    assert figures["images"] == 3 and figures["images_per_s"] > 0 and figures["peak_rss_mb"] > 0


def test_synth_gan_is_wired_to_the_trained_generator(tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    m = METHODS.build("ours", synth="gan", checkpoint=str(bogus))
    assert m.options.synth.kind == "gan"
    with pytest.raises(ConfigError, match="checkpoint"):  # GanSynthesizer refuses a file `bench train` did not write
        m.setup({"pool": None, "seed": 0, "device": "cpu"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ours_on_cuda_matches_the_cpu_and_does_not_depend_on_the_batch(face_batch):
    """The same code on CUDA (chunks of 32): the same delegates and IFA classes as on the CPU, outputs within float
    rounding of the CPU's, and an image's output the same alone as within a batch."""
    pool = _pool(face_batch)
    outs, infos = {}, {}
    for dev in ("cpu", "cuda"):
        m = METHODS.build("ours", device=dev, psi="sface", steps=2)
        m.setup({"pool": pool, "seed": 0, "device": dev})
        batch = face_batch.subset([0, 1, 2, 3])
        batch.extras["pool"] = pool
        outs[dev] = m.anonymize(batch).images
        infos[dev] = [(i["vaa_delegate"], i["gsa_delegate"], i["ifa_classes"]) for i in m.last_info]
        if dev == "cuda":
            single = face_batch.subset([2])
            single.extras["pool"] = pool
            np.testing.assert_array_equal(m.anonymize(single).images[0], outs[dev][2])
    assert infos["cuda"] == infos["cpu"]
    diff = np.abs(outs["cuda"].astype(int) - outs["cpu"].astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8, (diff.mean(), np.percentile(diff, 99))

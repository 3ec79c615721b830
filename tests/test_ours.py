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
from bench.methods.ours.ifa import distract, gradcam_weights, run_ifa, select_classes
from bench.methods.ours.ipd import eligible_mask, exponential_mechanism, ipd_draw
from bench.methods.ours.psi import Codebook, Psi, facenet_from_module, similarity_theta
from bench.methods.ours.shapes import MIRROR_68, five_from_68, mirror_landmarks, normalize_shapes, pose_features
from bench.methods.ours.vaa import appearance_utility, l2_distances
from bench.methods.ours.warp import piecewise_affine_warp
from bench.types import FacePool


# -- IFA: Eq. 1-5 ---------------------------------------------------------------------------------------------------
def test_distract_k1_zeroes_the_cam_exactly():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(256, 7, 7, generator=g, dtype=torch.float64) * 3
    alpha = torch.randn(1, 256, generator=g, dtype=torch.float64)
    a_hat = distract(a, alpha, [1.0])
    cam_hat = torch.einsum("c,chw->hw", alpha[0], a_hat)
    cam = torch.einsum("c,chw->hw", alpha[0], a)
    assert cam.abs().max() > 1.0
    assert cam_hat.abs().max() < 1e-12 * cam.abs().max() * 256  # alpha^{c} A-hat = 0 (Eq. 3)
    # xi = alpha^T Phi with Phi = -(alpha A) / (alpha alpha^T) (Eq. 4): the change lies along alpha at every pixel
    xi = a_hat - a
    phi = -cam / alpha[0].dot(alpha[0])
    torch.testing.assert_close(xi, alpha[0][:, None, None] * phi[None])


def test_distract_is_the_weighted_sum_of_eq5():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(32, 5, 5, generator=g, dtype=torch.float64)
    alphas = torch.randn(3, 32, generator=g, dtype=torch.float64)
    w = [0.5, 1.0, 2.0]
    expected = a.clone()
    for i in range(3):
        phi = -torch.einsum("c,chw->hw", alphas[i], a) / alphas[i].dot(alphas[i])
        expected += w[i] * alphas[i][:, None, None] * phi[None]
    torch.testing.assert_close(distract(a, alphas, w), expected)
    # a class without gradient contributes nothing
    torch.testing.assert_close(distract(a, torch.zeros(1, 32, dtype=torch.float64), [1.0]), a)


class _ToyNet(nn.Module):
    """conv -> ReLU (A, the last conv layer) -> global average pool -> linear: a GAP classifier as in Grad-CAM."""

    def __init__(self, n_classes: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.last = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.emb = nn.Linear(16, 16)
        self.logits = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.last(torch.relu(self.conv1(x)))
        return self.logits(self.emb(self.pool(a).flatten(1)))


def _toy_psi(n_classes: int = 6) -> Psi:
    from bench.face.align import template

    return Psi(_ToyNet(n_classes), name="toy", layer="last", embedding_layer="emb",
               template_points=template("arcface112", 32), input_size=32)


def test_gradcam_weights_are_spatial_means_of_the_gradient():
    psi = _toy_psi()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.enable_grad():
        out = psi.forward(x, mode="capture")
        alphas = gradcam_weights(out.a, out.logits, [0, 3])
    # Eq. 2 by hand: alpha^c_j = (1/Z) sum_kl dy^c/dA^j_kl; for a GAP + linear head dy^c/dA^j_kl = (W_c M)_j / Z
    net = psi.module
    z = out.a.shape[-1] * out.a.shape[-2]
    direct = (net.logits.weight @ net.emb.weight)[[0, 3]] / z
    torch.testing.assert_close(alphas, direct, rtol=1e-5, atol=1e-7)


def test_ifa_k1_property_through_the_network_and_logit_suppression():
    psi = _toy_psi()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    res = run_ifa(psi, x, k=1)
    assert res.residuals[0] < 1e-5  # alpha^{c_1} A-hat = 0 through the hook plumbing
    # for a GAP + linear head, alpha^{c} is parallel to the class's weights, so y^{c}(A-hat) drops to its bias
    with torch.no_grad():
        before = psi.forward(x).logits[0]
        a = psi.forward(x, mode="capture").a.detach()
    c = res.classes[0]
    assert c == int(before.argmax())
    with torch.no_grad():
        out_hat = psi.module.logits(psi.module.emb(psi.module.pool(distract(a[0], gradcam_weights_for(psi, x, c),
                                                                                     [1.0])[None]).flatten(1)))
    bias_c = psi.module.logits.bias[c] + psi.module.logits.weight[c] @ psi.module.emb.bias
    assert abs(float(out_hat[0, c] - bias_c)) < 1e-4
    assert np.all(res.heatmap >= 0) and res.heatmap_hat.max() <= 1e-5 * max(res.heatmap.max(), 1e-6) + 1e-6
    assert 0.0 < res.cosine < 1.0 and res.z_id.shape == (16,)
    assert abs(float(res.z_id.norm()) - 1.0) < 1e-5


def gradcam_weights_for(psi: Psi, x: torch.Tensor, c: int) -> torch.Tensor:
    with torch.enable_grad():
        out = psi.forward(x, mode="capture")
        return gradcam_weights(out.a, out.logits, [c])


def test_ifa_class_choices_and_diversity_term():
    scores = np.array([5.0, 1.0, 4.0, -2.0, 3.0, 0.0])
    allowed = np.array([True, True, False, True, True, True])
    assert select_classes(scores, allowed, 2, "topk", None) == [0, 4]
    assert select_classes(scores, allowed, 2, "kfn", None) == [3, 5]
    a = select_classes(scores, allowed, 3, "rand", np.random.default_rng(7))
    assert a == select_classes(scores, allowed, 3, "rand", np.random.default_rng(7))
    assert len(set(a)) == 3 and 2 not in a
    assert select_classes(scores, allowed, 99, "topk", None) == [0, 4, 1, 5, 3]  # K capped at the allowed classes
    psi = _toy_psi()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    res = run_ifa(psi, x, k=2, diversity_j=1, diversity_weight=0.5)
    with torch.no_grad():
        logits = psi.forward(x).logits[0].numpy()
    assert res.classes[-1] == int(np.argmin(logits)) and res.weights == [1.0, 1.0, 0.5]


def test_ifa_with_a_codebook_masks_the_query_identity():
    from bench.face.align import template

    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 12))
    protos = np.random.default_rng(0).normal(size=(4, 12)).astype(np.float32)
    cb = Codebook.from_embeddings(np.repeat(protos, 2, axis=0), ["a", "a", "b", "b", "c", "c", "d", "d"], "test")
    assert cb.labels == ["a", "b", "c", "d"] and np.allclose(np.linalg.norm(cb.prototypes, axis=1), 1)
    psi = Psi(net, name="toy", layer="3", template_points=template("arcface112", 32), input_size=32, codebook=cb)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        out = psi.forward(x)
    torch.testing.assert_close(out.logits, 64.0 * out.embedding @ torch.from_numpy(cb.prototypes).T)
    top = int(out.logits.argmax())
    allowed = np.array([lab != cb.labels[top] for lab in cb.labels])
    res = run_ifa(psi, x, k=1, allowed=allowed)
    assert res.classes[0] != top and res.residuals[0] < 1e-5


def test_facenet_psi_on_a_stand_in_inception_resnet():
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(classify=True, num_classes=20).eval()  # random stand-in weights; real ones need a download
    psi = facenet_from_module(net)
    assert psi.layer == "net.block8" and psi.embedding_layer == "net.last_bn" and psi.n_classes == 20
    crops = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    from bench.face.align import template

    aligned = psi.align(crops, template("crop", 256)[None])
    assert aligned.shape == (1, 3, 160, 160)
    res = run_ifa(psi, aligned, k=1)
    assert res.residuals[0] < 1e-4 and res.z_id.shape == (512,)
    assert res.heatmap.shape == (3, 3)  # block8 is 1792 x 3 x 3 at 160 px


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
    m = METHODS.build("ours", device="cpu", psi="sface")
    return m


def test_ours_changes_the_face_not_the_background(ours_method, face_batch):
    from scipy.ndimage import binary_dilation

    pool = _pool(face_batch, identities=list(face_batch.identities))  # the evaluated faces themselves, as the runner
    batch = face_batch.subset([0, 2])
    batch.extras["pool"] = pool
    ours_method.setup({"pool": pool, "seed": 0, "device": "cpu"})
    res = ours_method.anonymize(batch)
    assert not res.failures and res.images.dtype == np.uint8
    for i in range(len(batch)):
        region = np.zeros((256, 256), bool)
        from bench.face.mask import face_mask

        region |= face_mask(256, batch.landmarks5[i], batch.landmarks68[i], forehead=0.5)
        far = ~binary_dilation(region, iterations=24)
        np.testing.assert_array_equal(res.images[i][far], batch.images[i][far])
        inside = batch.masks[i]
        assert np.abs(res.images[i][inside].astype(int) - batch.images[i][inside].astype(int)).mean() > 8
    for name in ("cam_H", "cam_H_hat", "delegate_appearance", "geometry", "warped"):
        assert res.extras[name].shape == batch.images.shape
    # the delegates never come from the query's own identity, and are recorded
    for info, qid in zip(ours_method.last_info, batch.identities, strict=True):
        assert info["vaa_delegate_identity"] != qid and info["gsa_delegate_identity"] != qid
    desc = json.loads(json.dumps(ours_method.describe()))
    for key in ("psi", "K", "w_i", "epsilon", "k", "synthesizer", "pool", "white_box_recognizers"):
        assert key in desc
    assert desc["white_box_recognizers"] == ["sface"] and desc["K"] == 3 and desc["w_i"] == [1.0, 1.0, 1.0]
    assert desc["psi"]["codebook"]["n_classes"] == len(set(pool.identities))
    assert desc["synthesizer"]["name"] == "warp"
    assert desc["diagnostics"]["ifa_residual_c1"]["n"] == 2


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


def test_ablation_variants_are_option_sets():
    assert METHODS.build("ours-no-ifa").options.ifa == "off"
    assert METHODS.build("ours-no-vaa").options.vaa == "off"
    assert METHODS.build("ours-no-gsa").options.gsa == "off"
    assert METHODS.build("ours-ifa-kfn").options.ifa == "kfn"
    assert METHODS.build("ours-gsa-rand").options.gsa == "rand"
    assert not METHODS.build("ours-no-ua").options.use_ua and not METHODS.build("ours-no-ug").options.use_ug
    assert [METHODS.build(f"ours-k{k}").options.top_k for k in range(1, 11)] == list(range(1, 11))
    assert METHODS.build("ours-eps0.5").options.epsilon == 0.5
    assert METHODS.build("ours-div-j2").options.diversity_j == 2
    assert METHODS.build("ours").options.psi in ("sface", "facenet")  # "auto" is resolved at construction


@pytest.mark.parametrize("options, match", [
    ({"psi": "vgg"}, "psi must be"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 2, "class_weights": "1,2,3"}, "class_weights"),
    ({"epsilon": -1}, "epsilon"),
    ({"synth": "gan"}, "checkpoint"),
    ({"codebook": "/nonexistent/codebook.npz"}, "codebook"),
])
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        METHODS.build("ours", **options)


def test_codebook_file_round_trip(tmp_path):
    cb = Codebook.from_embeddings(np.eye(4, 8), ["a", "b", "c", "d"], "test")
    cb.save(tmp_path / "cb.npz")
    back = Codebook.load(tmp_path / "cb.npz")
    assert back.labels == cb.labels and np.allclose(back.prototypes, cb.prototypes)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="bad.npz"):
        Codebook.load(tmp_path / "bad.npz")


@pytest.mark.slow
def test_bench_run_ours_on_demo(tmp_path):
    from click.testing import CliRunner

    from bench.cli import cli

    res = CliRunner().invoke(cli, ["run", "--method", "ours", "--dataset", "demo", "--out", str(tmp_path), "--quiet",
                                   "--metrics", "ssim", "--save-images", "--device", "cpu"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["summary"]["ok"] == manifest["summary"]["images"] == 8
    method = manifest["method"]
    assert method["pool"]["size"] == 8 and method["psi"]["codebook"]["n_classes"] == 8
    run_dir = next(tmp_path.rglob("manifest.json")).parent
    assert len(list((run_dir / "images" / "cam_H").rglob("*.png"))) == 8


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


def test_ours_with_the_facenet_psi_on_stand_in_weights(face_batch, monkeypatch):
    """psi=facenet end to end: FaceNet's own classes (no codebook), block8 Grad-CAM, 512-d recast feature."""
    from facenet_pytorch import InceptionResnetV1

    from bench.methods.ours import vaa
    from bench.models.base import input_adapter

    torch.manual_seed(0)

    class _StandIn:  # the FaceNet recogniser's interface, with random weights (the real ones need a download)
        input_size = 160

        def classifier_module(self) -> nn.Module:
            return input_adapter(InceptionResnetV1(classify=True, num_classes=20).eval(), mean=127.5, std=128.0)

    real = vaa.get_recognizer

    def fake(name: str, device: str):
        return _StandIn() if name == "facenet" else real(name, device)

    monkeypatch.setattr(vaa, "get_recognizer", fake)
    m = METHODS.build("ours", psi="facenet", steps=1)
    batch = face_batch.subset([4])
    pool = _pool(face_batch)
    m.setup({"pool": pool, "seed": 0, "device": "cpu"})
    batch.extras["pool"] = pool
    res = m.anonymize(batch)
    assert not res.failures
    desc = m.describe()
    assert desc["psi"]["name"] == "facenet" and desc["psi"]["n_classes"] == 20 and "codebook" not in desc["psi"]
    assert desc["white_box_recognizers"] == ["facenet"]
    assert desc["diagnostics"]["ifa_residual_c1"]["n"] == 1


def test_synth_gan_is_wired_to_the_trained_generator(tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    m = METHODS.build("ours", synth="gan", checkpoint=str(bogus))
    with pytest.raises(ConfigError, match="checkpoint"):  # GanSynthesizer refuses a file `bench train` did not write
        m.setup({"pool": None, "seed": 0, "device": "cpu"})

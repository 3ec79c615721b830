"""Tests of the conditional generator, its losses, training loop and ``gan`` synthesiser (bench.methods.ours.gan)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.errors import ConfigError
from bench.face.align import estimate_similarity, template, warp
from bench.methods.ours.gan import inputs as I
from bench.methods.ours.gan import losses as L
from bench.methods.ours.gan.config import LossWeights, ModelConfig, TrainConfig, apply_overrides
from bench.methods.ours.gan.data import mean_landmarks68, synthetic_faces
from bench.methods.ours.gan.networks import AppearanceEncoder, Discriminator, Generator, Translator
from bench.methods.ours.gan.synth import GanSynthesizer
from bench.methods.ours.gan.train import Trainer, TrainingDivergedError, load_checkpoint, run_training
from bench.methods.ours.step import Step1Output

ID_DIM = 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The networks here are tiny: extra intra-op threads only add contention on small shared CI machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- helpers ---------------------------------------------------------------------------------------------------------
def tiny_model(size: int = 64, **kw) -> ModelConfig:
    base = {"size": size, "width": 8, "max_width": 32, "n_down": 3, "n_bottleneck": 1, "zc_dim": 32, "id_dim": ID_DIM,
            "psi": "standin", "disc_width": 8, "disc_max_width": 32, "disc_layers": 3, "disc_scales": 2}
    base.update(kw)
    return ModelConfig(**base)


def standin_psi(size: int) -> L.IdentityNet:
    """A tiny random conv net on the ArcFace-112 template (real Psi needs weights)."""
    g = torch.Generator().manual_seed(123)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, ID_DIM))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return L.IdentityNet(net, size, template("arcface112"), 112, name="standin")


def standin_perceptual() -> L.VGGPerceptual:
    g = torch.Generator().manual_seed(7)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return L.VGGPerceptual(net, "standin", layers=(1, 4))


def tiny_config(out: Path, **kw) -> TrainConfig:
    base = {"dataset": "synthetic", "out": str(out), "batch_size": 4, "steps": 6, "device": "cpu", "lr_g": 2e-4,
            "lr_d": 2e-4, "log_every": 2, "eval_every": 3, "sample_every": 3, "ckpt_every": 3, "val_images": 8,
            "sample_count": 3, "tensorboard": False, "model": tiny_model()}
    base.update(kw)
    return TrainConfig(**base)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def landmarks_batch(b: int, size: int) -> torch.Tensor:
    return torch.from_numpy(np.repeat(mean_landmarks68(size)[None], b, 0))


# -- inputs (Z_a, Z_g) -----------------------------------------------------------------------------------------------
def test_structure_map_and_geometry_input():
    size = 64
    lm = landmarks_batch(2, size)
    lm[1, :, 0] += 5  # shift the second face to the right
    s = I.render_structure(lm, size)
    assert s.shape == (2, I.STRUCTURE_CHANNELS, size, size)
    assert set(torch.unique(s).tolist()) <= {0.0, 1.0}
    assert all(s[0, c].sum() > 0 for c in range(I.STRUCTURE_CHANNELS))  # every part drawn
    jaw = s[0, 0].nonzero().float()
    assert jaw[:, 0].max() > 0.8 * size  # the chin is low in the crop
    assert not torch.equal(s[0], s[1])

    x = torch.rand(2, 3, size, size)
    hole = I.hull_masks(lm, size)
    geo = I.geometry_input(x, hole, lm, s)
    z_g = geo.tensor()
    assert z_g.shape == (2, I.GEOMETRY_CHANNELS, size, size)
    inside = hole[0, 0] > 0
    assert torch.all(geo.background_image[0][:, inside] == 0)  # no face pixel of x leaks into Z_g
    assert torch.allclose(geo.background_image[0][:, ~inside], x[0][:, ~inside])
    fg = I.appearance_input(x, hole)
    assert torch.all(fg[0][:, ~inside] == 0) and torch.allclose(fg[0][:, inside], x[0][:, inside])


def test_face_hole_is_union_and_dilates():
    size = 64
    lm = landmarks_batch(1, size)
    s_hat = lm.clone()
    s_hat[..., 0] += 6
    a, b = I.hull_masks(lm, size), I.hull_masks(s_hat, size)
    hole = I.face_hole(lm, s_hat, size)
    assert torch.equal(hole, torch.maximum(a, b))
    assert I.face_hole(lm, s_hat, size, dilate=3).sum() > hole.sum()
    assert I.face_hole(lm, lm, size, x_mask=a).sum() == a.sum()


# -- networks ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 128])
def test_encoder_shapes_and_gradients(size):
    enc = AppearanceEncoder(size, 8, 32, ID_DIM)
    assert len(enc.blocks) == 6
    z = torch.rand(2, 3, size, size, requires_grad=True)
    f_a = enc(z)
    assert f_a.shape == (2, ID_DIM) and torch.all(f_a >= 0)  # SumPooling of ReLU features
    f_a.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is not None for p in enc.parameters())


def test_translator_shapes_gradients_and_adain_conditioning():
    cfg = tiny_model()
    torch.manual_seed(0)
    t = Translator(cfg)
    z_g = torch.randn(2, I.GEOMETRY_CHANNELS, 64, 64)
    z_id = torch.nn.functional.normalize(torch.randn(2, ID_DIM), dim=1).requires_grad_(True)
    f_a = torch.rand(2, ID_DIM)
    out = t(z_g, z_id, f_a)
    assert out.shape == (2, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, t(z_g, z_id, f_a))  # deterministic
    other = t(z_g, torch.nn.functional.normalize(torch.randn(2, ID_DIM), dim=1), f_a)
    assert (other - out).abs().mean() > 1e-4  # AdaIN: Z_id changes the output
    assert (t(z_g, z_id, f_a + 1) - out).abs().mean() > 1e-4  # and so does f_a
    out.mean().backward()
    assert z_id.grad is not None and z_id.grad.abs().sum() > 0  # the gradient reaches Z_id through Z_c and AdaIN
    assert t.fc.weight.grad is not None and t.fc.weight.grad.abs().sum() > 0


def test_generator_wires_encoder_and_translator():
    g = Generator(tiny_model())
    img, f_a = g(torch.randn(3, ID_DIM), torch.rand(3, 3, 64, 64), torch.randn(3, I.GEOMETRY_CHANNELS, 64, 64))
    assert img.shape == (3, 3, 64, 64) and f_a.shape == (3, ID_DIM)
    with pytest.raises(ValueError, match="id_dim"):
        Generator(tiny_model(id_dim=0))


def test_discriminator_multiscale_features_and_gradients():
    cfg = tiny_model()
    d = Discriminator(cfg)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    s = I.render_structure(landmarks_batch(2, 64), 64)
    out = d(x, s)
    assert len(out) == cfg.disc_scales
    (l0, f0), (l1, _) = out
    assert l0.shape == (2, 1, 8, 8) and l1.shape == (2, 1, 4, 4)
    assert len(f0) == cfg.disc_layers and f0[0].shape == (2, 8, 32, 32)
    L.d_hinge(out, None).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the structure is part of the input: another geometry gives other logits
    s2 = I.render_structure(landmarks_batch(2, 64) + 4, 64)
    assert not torch.allclose(d(x, s2)[0][0], l0)


# -- losses -----------------------------------------------------------------------------------------------------------
def test_d_e_is_zero_for_orthogonal_features():
    f_x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    f_a = torch.tensor([[0.0, 3.0, 1.0, 0.0], [5.0, 0.0, 0.0, 1.0]])  # orthogonal row by row
    assert L.d_e(f_a, f_x).item() == 0.0
    assert L.d_e(-f_x, f_x).item() == 0.0  # opposite: max(0, -1) = 0
    assert L.d_e(f_x * 3, f_x).item() == pytest.approx(1.0)
    mixed = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert L.d_e(mixed, f_x).item() == pytest.approx((1 / math.sqrt(2) + 1.0) / 2, abs=1e-6)


def test_hinge_feature_matching_identity_and_background_values():
    real = [(torch.full((1, 1, 2, 2), 2.0), [torch.ones(1, 2, 2, 2)]),
            (torch.full((1, 1, 1, 1), 0.5), [torch.zeros(1)])]
    fake = [(torch.full((1, 1, 2, 2), -0.5), [torch.zeros(1, 2, 2, 2)]),
            (torch.full((1, 1, 1, 1), 1.0), [torch.ones(1)])]
    # D: scale 0: relu(1-2)=0 + relu(1-0.5)=0.5; scale 1: relu(1-0.5)=0.5 + relu(1+1)=2 -> (0.5 + 2.5) / 2
    assert L.d_hinge(real, fake).item() == pytest.approx(1.5)
    assert L.g_adversarial(fake).item() == pytest.approx((0.5 - 1.0) / 2)
    assert L.feature_matching(real, fake).item() == pytest.approx(1.0)
    assert L.feature_matching(real, real).item() == 0.0
    assert L.identity_distance(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2)).item() == pytest.approx(5.0)
    assert L.appearance_distance(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(1.0)
    x = torch.zeros(1, 3, 4, 4)
    g = torch.zeros(1, 3, 4, 4)
    g[..., :2, :] = 1.0  # differs only in the top half
    bg = torch.zeros(1, 1, 4, 4)
    bg[..., 2:, :] = 1.0  # background = bottom half
    assert L.background_l1(x, g, bg).item() == pytest.approx(0.0)
    assert L.background_l1(x, g, 1 - bg).item() == pytest.approx(1.0, abs=1e-5)


def test_identity_net_alignment_matches_cv2_warp():
    size = 96
    rng = np.random.default_rng(0)
    crop = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    crop = np.ascontiguousarray(np.kron(crop[::8, ::8], np.ones((8, 8, 1))).astype(np.uint8))  # smooth-ish blocks
    psi = standin_psi(size)
    ours = psi.align(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy() * 255
    ref = warp(crop, estimate_similarity(template("crop", size), template("arcface112")), 112).astype(np.float64)
    inner = (slice(8, -8), slice(8, -8))  # borders differ only by the zero-padding convention
    assert np.abs(ours[inner] - ref[inner]).mean() < 2.0
    assert psi(torch.rand(2, 3, size, size)).norm(dim=1).allclose(torch.ones(2))


def test_config_overrides_and_validation():
    cfg = apply_overrides(TrainConfig(), {"steps": "10", "lambda5": "3", "width": "32", "batch-size": 2})
    assert cfg.steps == 10 and cfg.loss.lambda5 == 3.0 and cfg.model.width == 32 and cfg.batch_size == 2
    assert LossWeights() == LossWeights(1, 1, 1, 1, 2, 2, 0.6, 2, 0.8)  # the paper's Sec. 4.1 values
    with pytest.raises(ConfigError, match="no option 'nope'"):
        apply_overrides(TrainConfig(), {"nope": 1})
    with pytest.raises(ConfigError, match="divisible"):
        apply_overrides(TrainConfig(), {"size": 100})
    with pytest.raises(ConfigError, match="perceptual"):
        L.load_perceptual("resnet", "cpu")


def test_vgg19_perceptual_from_explicit_weights(tmp_path):
    import torchvision

    feats = torchvision.models.vgg19().features
    path = tmp_path / "vgg19-standin.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)
    perc = L.load_perceptual("vgg19", "cpu", str(path))
    assert perc.kind == "vgg19" and len(perc.extract(torch.rand(1, 3, 32, 32))) == 5
    assert torch.equal(perc.features[0].weight, feats[0].weight)
    with pytest.raises(Exception, match="does not exist"):
        L.load_perceptual("vgg19", "cpu", str(tmp_path / "missing.pth"))


# -- one step of Eq. 9 ------------------------------------------------------------------------------------------------
def test_both_branches_give_finite_terms_and_gradients(tmp_path):
    trainer = Trainer(tiny_config(tmp_path), data=synthetic_faces(24, 64), psi=standin_psi(64),
                      perceptual=standin_perceptual())
    batch = trainer.make_batch(np.arange(4), np.arange(4, 8), radii=2)
    assert batch.f_x.shape == (4, ID_DIM)
    for branch, n_fakes in (("rec", 1), ("swap", 2)):
        trainer.G.zero_grad()
        res = L.generator_losses(trainer.G, trainer.D, trainer.psi, trainer.perceptual, LossWeights(), batch, branch)
        assert set(L.LOSS_TERMS) | {"d_e"} == set(res.terms)
        assert all(torch.isfinite(v) for v in res.terms.values()), res.terms
        assert all(res.terms[k] > 0 for k in ("L2_fm", "L3_perc", "L5_id", "L6_bg"))
        assert len(res.fakes) == n_fakes
        res.total.backward()
        assert trainer.G.encoder.blocks[0].conv1.weight.grad.abs().sum() > 0
        assert trainer.G.translator.fc.weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in trainer.psi.parameters())  # Psi stays frozen
        d_loss, _ = L.discriminator_losses(trainer.D, batch, res.fakes)
        assert torch.isfinite(d_loss) and d_loss > 0
    with pytest.raises(ValueError, match="branch"):
        L.generator_losses(trainer.G, trainer.D, trainer.psi, None, LossWeights(), batch, "other")


def test_nan_stops_training_with_a_clear_error(tmp_path):
    trainer = Trainer(tiny_config(tmp_path), data=synthetic_faces(24, 64), psi=standin_psi(64), perceptual=None)
    with torch.no_grad():
        trainer.G.translator.out.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"step 1 \(rec branch\).*not finite"):
        trainer.train_step()
    trainer = Trainer(tiny_config(tmp_path), data=synthetic_faces(24, 64), psi=standin_psi(64), perceptual=None)
    trainer.G.translator.out.weight.register_hook(lambda g: g * float("nan"))  # finite loss, NaN gradient
    with pytest.raises(TrainingDivergedError, match=r"non-finite gradients in G \(translator.out.weight"):
        trainer.train_step()
    assert trainer.step == 0


# -- training loop: checkpoints, logs, resume -------------------------------------------------------------------------
def _train(out: Path, steps: int, resume: bool = False, data=None, **kw):
    cfg = tiny_config(out, steps=steps, **kw)
    return run_training(cfg, resume=resume, data=data or synthetic_faces(32, 64), psi=standin_psi(64),
                        perceptual=standin_perceptual())


def test_synthetic_training_writes_everything_and_resumes_bit_identically(tmp_path):
    straight = _train(tmp_path / "a", 6)
    assert straight.step == 6 and straight.last.is_file() and straight.best is not None
    assert straight.perceptual == "standin"
    rows = read_csv(tmp_path / "a" / "losses.csv")
    assert [r["branch"] for r in rows] == ["rec", "swap"] * 3  # the 1:1 alternation
    assert all(math.isfinite(float(r[k])) for r in rows for k in (*L.LOSS_TERMS, "d_e", "D_hinge", "G_total"))
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    from bench.imageio import read_image

    grid = read_image(tmp_path / "a" / "samples" / "step_0000006.png")
    assert grid.shape == (2 + 4 * 66, 2 + 3 * 66, 3)  # rows x, x-hat, y-hat, x-bar; 3 samples; 2 px padding
    assert len(read_csv(tmp_path / "a" / "val.csv")) == 2

    _train(tmp_path / "b", 3)
    with pytest.raises(ConfigError, match="--resume"):
        _train(tmp_path / "b", 6)  # an existing run is never overwritten silently
    resumed = _train(tmp_path / "b", 6, resume=True)
    assert resumed.step == 6
    a, b = load_checkpoint(straight.last), load_checkpoint(resumed.last)
    for part in ("generator", "discriminator"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part}.{k} differs after resume"
    assert a["rng"]["numpy"] == b["rng"]["numpy"]
    rows_b = read_csv(tmp_path / "b" / "losses.csv")
    assert [r["step"] for r in rows_b] == [str(i) for i in range(1, 7)]
    for ra, rb in zip(rows, rows_b):
        assert {k: v for k, v in ra.items() if k != "sec"} == {k: v for k, v in rb.items() if k != "sec"}


def test_resume_refuses_another_architecture(tmp_path):
    _train(tmp_path, 2)
    with pytest.raises(ConfigError, match="model"):
        _train(tmp_path, 4, resume=True, model=tiny_model(width=16))
    with pytest.raises(ConfigError, match="no checkpoint"):
        _train(tmp_path / "empty", 4, resume=True)


def test_cli_trains_and_resumes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import bench.methods.ours.gan.train as T
    from bench.methods.ours.gan.cli import train_command

    monkeypatch.setattr(T, "psi_from_registry", lambda name, size, device: standin_psi(size))
    monkeypatch.setattr(T, "load_perceptual", lambda kind, device, weights=None: None)
    out = tmp_path / "run"
    args = ["ours", "--dataset", "synthetic", "--size", "64", "--width", "8", "--batch-size", "2", "--steps", "2",
            "--out", str(out), "--device", "cpu", "--limit", "16", "--psi", "standin",
            "--set", "max_width=16", "--set", "n_down=2", "--set", "disc_layers=2", "--set", "tensorboard=false"]
    res = CliRunner().invoke(train_command, args)
    assert res.exit_code == 0, res.output
    assert "trained to step 2" in res.output
    res = CliRunner().invoke(train_command, ["ours", "--out", str(out), "--steps", "4", "--resume"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4
    res = CliRunner().invoke(train_command, ["ours", "--out", str(out), "--resume", "--width", "16"])
    assert res.exit_code != 0 and "differs from the checkpoint" in res.output
    res = CliRunner().invoke(train_command, ["ours", "--dataset", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "unknown --dataset 'nope'" in res.output


# -- the gan synthesiser ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gan-ckpt")
    return _train(out, 2).last


def _step1(size: int = 64, b: int = 2, id_dim: int = ID_DIM, psi=None) -> Step1Output:
    data = synthetic_faces(2 * b, size, seed=3)
    x = torch.from_numpy(data.crops[:b]).permute(0, 3, 1, 2).float() / 255
    z_a = torch.from_numpy(data.crops[b:]).permute(0, 3, 1, 2).float() / 255
    lm, lm_a = torch.from_numpy(data.landmarks68[:b]), torch.from_numpy(data.landmarks68[b:])
    return Step1Output(x=x, mask=I.hull_masks(lm, size), landmarks68=lm, z_id=torch.randn(b, id_dim), z_a=z_a,
                       z_a_landmarks68=lm_a, s_hat=lm_a.clone(), psi=psi)


def test_gan_synthesizer_renders_step1_outputs(smoke_checkpoint):
    synth = GanSynthesizer(str(smoke_checkpoint), device="cpu")
    s1 = _step1()
    out = synth(s1)
    assert out.shape == s1.x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    hole = I.face_hole(s1.landmarks68, s1.s_hat, 64, dilate=round(0.015 * 64), x_mask=s1.mask)
    far = torch.nn.functional.max_pool2d(hole, 9, 1, 4)[:, 0] == 0  # well outside the feathered hole
    assert torch.allclose(out.permute(1, 0, 2, 3)[:, far], s1.x.permute(1, 0, 2, 3)[:, far])  # background is x
    s1.z_id = torch.randn_like(s1.z_id)
    assert not torch.allclose(synth(s1), out)  # Z_id matters
    s1.z_id = None  # "w/o IFA": appearance-only condition
    assert synth(s1).shape == out.shape
    d = synth.describe()
    assert d["synthesizer"] == "gan" and d["step"] == 2 and d["size"] == 64 and d["id_dim"] == ID_DIM
    assert len(d["checkpoint_sha256"]) == 64
    raw = GanSynthesizer(str(smoke_checkpoint), blend=False)(_step1())
    assert raw.shape == out.shape


def test_gan_synthesizer_refuses_mismatches(smoke_checkpoint, tmp_path):
    synth = GanSynthesizer(str(smoke_checkpoint))
    with pytest.raises(ConfigError, match="expects 16"):
        synth(_step1(id_dim=128))
    with pytest.raises(ConfigError, match="trained on 64x64 crops"):
        synth(_step1(size=128))

    class Psi:
        name = "facenet"

    with pytest.raises(ConfigError, match="facenet"):
        synth(_step1(psi=Psi()))
    with pytest.raises(ConfigError, match="does not exist"):
        GanSynthesizer(str(tmp_path / "none.pt"))
    with pytest.raises(ConfigError, match="checkpoint=PATH"):
        GanSynthesizer("")
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    with pytest.raises(ConfigError, match="not a `bench train ours` checkpoint"):
        GanSynthesizer(str(bogus))
    state = load_checkpoint(smoke_checkpoint)
    state["config"]["model"]["width"] = 16  # the config no longer describes the weights
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ConfigError, match="does not match"):
        GanSynthesizer(str(tmp_path / "edited.pt"))


# -- real photos ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.realdata
def test_cpu_smoke_training_on_real_celeba_crops(celeba_root, tmp_path):
    from bench.methods.ours.gan.data import prepare_faces

    data = prepare_faces("celeba", celeba_root, 64, limit=40, workers=2)
    assert len(data) >= 30 and data.size == 64 and len(np.unique(data.identities)) >= 3
    again = prepare_faces("celeba", celeba_root, 64, limit=40, workers=2)  # cached: same arrays, no detection
    assert np.array_equal(np.asarray(again.crops), np.asarray(data.crops))

    torch.manual_seed(0)
    steps = 80
    cfg = {"dataset": "celeba", "data_root": str(celeba_root), "limit": 40, "batch_size": 4, "lr_g": 4e-4,
           "lr_d": 2e-4, "log_every": 20, "eval_every": 40, "sample_every": 40, "ckpt_every": 40,
           "model": tiny_model(n_down=2)}
    result = run_training(tiny_config(tmp_path / "run", steps=steps, **cfg), data=data, psi=standin_psi(64),
                          perceptual=standin_perceptual())
    rows = read_csv(tmp_path / "run" / "losses.csv")
    assert len(rows) == steps
    for r in rows:
        assert all(math.isfinite(float(r[k])) for k in (*L.LOSS_TERMS, "d_e", "G_total", "D_hinge")), r
    rec = [float(r["pix_l1"]) for r in rows if r["branch"] == "rec"]
    bg = [float(r["L6_bg"]) for r in rows if r["branch"] == "rec"]
    start, end = np.mean(rec[:10]), np.mean(rec[-10:])
    assert end < 0.9 * start, f"reconstruction l1 did not fall: {start:.4f} -> {end:.4f}"
    assert np.mean(bg[-10:]) < np.mean(bg[:10])
    assert (tmp_path / "run" / "samples" / f"step_{steps:07d}.png").is_file()
    assert result.last.is_file() and result.best is not None and result.best.is_file()

    # resume: the saved state is restored exactly and training continues at the next step
    saved = load_checkpoint(result.last)
    cfg_resume = tiny_config(tmp_path / "run", steps=steps + 2, **cfg)
    trainer = Trainer(cfg_resume, data=data, psi=standin_psi(64), perceptual=standin_perceptual())
    trainer.load_state_dict(saved)
    assert trainer.step == steps
    for k, v in trainer.G.state_dict().items():
        assert torch.equal(v, saved["generator"][k])
    assert trainer.opt_g.state_dict()["state"][0]["step"] == saved["opt_g"]["state"][0]["step"]
    run_training(cfg_resume, resume=True, data=data, psi=standin_psi(64), perceptual=standin_perceptual())
    rows = read_csv(tmp_path / "run" / "losses.csv")
    assert [int(r["step"]) for r in rows[-3:]] == [steps, steps + 1, steps + 2]

    # the checkpoint drives the gan synthesiser on a real crop
    synth = GanSynthesizer(str(result.last))
    x = torch.from_numpy(np.array(data.crops[:2])).permute(0, 3, 1, 2).float() / 255
    lm = torch.from_numpy(np.array(data.landmarks68[:2]))
    s1 = Step1Output(x=x, mask=I.hull_masks(lm, 64), landmarks68=lm, z_id=torch.randn(2, ID_DIM), z_a=x.flip(0),
                     z_a_landmarks68=lm.flip(0), s_hat=lm)
    out = synth(s1)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.weights
@pytest.mark.realdata
def test_real_psi_and_offline_vgg_train_step(celeba_root, tmp_path):
    """Two steps with the real offline networks: SFace as Psi (L5, rho_2) and the offline VGG16 backbone (rho_1)."""
    from bench.methods.ours.gan.data import prepare_faces

    try:
        from bench.models.sface import SFace

        psi_net = SFace().torch_module()
        perc = L.load_perceptual("auto", "cpu")
    except Exception as exc:  # noqa: BLE001 - any missing model file: skip with the reason
        pytest.skip(f"offline SFace/VGG16 not available: {exc}")
    psi = L.IdentityNet(psi_net, 64, template("arcface112"), 112, name="sface")
    data = prepare_faces("celeba", celeba_root, 64, limit=12, workers=2)
    cfg = tiny_config(tmp_path, steps=2, val_images=2, model=tiny_model(id_dim=0, psi="sface"))
    res = run_training(cfg, data=data, psi=psi, perceptual=perc)
    rows = read_csv(tmp_path / "losses.csv")
    assert all(math.isfinite(float(r[k])) for r in rows for k in L.LOSS_TERMS)
    state = load_checkpoint(res.last)
    assert state["config"]["model"]["id_dim"] == 128 and state["config"]["perceptual"] in ("vgg16", "vgg19")

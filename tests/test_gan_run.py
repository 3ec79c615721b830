"""`bench run --method ours --method-arg synth=gan --method-arg checkpoint=...` end to end with a smoke checkpoint
trained here (64x64, two steps, the real offline SFace as Psi and the offline VGG16 perceptual backbone)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))


@pytest.mark.weights
@pytest.mark.realdata
def test_bench_run_ours_with_a_smoke_gan_checkpoint(celeba_root, tmp_path):
    from test_gan import tiny_config, tiny_model

    import bench.methods.ours.gan.losses as L
    from bench.cli import cli
    from bench.face.align import template
    from bench.methods.ours.gan.data import prepare_faces
    from bench.methods.ours.gan.train import run_training
    from bench.models.sface import SFace

    psi = L.IdentityNet(SFace().torch_module(), 64, template("arcface112"), 112, name="sface")
    data = prepare_faces("celeba", celeba_root, 64, limit=12, workers=1)
    cfg = tiny_config(tmp_path / "train", steps=2, val_images=2, model=tiny_model(id_dim=0, psi="sface"))
    ckpt = run_training(cfg, data=data, psi=psi, perceptual=L.load_perceptual("auto", "cpu")).last

    args = ["run", "-m", "ours", "-d", "demo", "--crop-size", "64", "--out", str(tmp_path / "runs"), "--quiet",
            "--metrics", "ssim,lpips", "--method-arg", "synth=gan", "--method-arg", f"checkpoint={ckpt}",
            "--method-arg", "psi=sface"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "ok: 8" in res.output and "failed: 0" in res.output
    manifest = next((tmp_path / "runs").rglob("manifest.json")).read_text()
    assert '"synthesizer": "gan"' in manifest and ckpt.name in manifest

    # a checkpoint trained on 64x64 crops refuses 256x256 runs with a clear one-line error
    args[args.index("64")] = "256"
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "trained on 64x64 crops" in res.output

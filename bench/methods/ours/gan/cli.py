"""``bench train ours``: train the conditional generator of Kuang et al., CVPR 2024 (Sec. 3.3-3.4).

The command only parses options into a :class:`~bench.methods.ours.gan.config.TrainConfig` and calls
:func:`~bench.methods.ours.gan.train.run_training`; torch is imported when the command runs, not when the CLI loads.
Options left out keep the config defaults (the paper's settings); ``--set key=value`` reaches every other field of
the config (loss weights ``lambda1``..``lambda6``/``beta1``..``beta3``, widths, cadences, ...).
"""

from __future__ import annotations

import logging
from typing import Any

import click

__all__ = ["train", "train_command"]


@click.command("train")
@click.argument("method", type=click.Choice(["ours"]))
@click.option("--dataset", help="Training faces: a bench dataset name (celebahq, celeba, folder, ...) or 'synthetic' "
              "(cartoon faces, for smoke tests only).  [default: celebahq]")
@click.option("--data-root", type=click.Path(file_okay=False), help="Root folder of the dataset.")
@click.option("--dataset-arg", "dataset_args", multiple=True, metavar="KEY=VALUE",
              help="Dataset option (repeatable); datasets with splits train on split=train unless given.")
@click.option("--size", type=int, help="Crop side in pixels (the paper: 256).  [default: 256]")
@click.option("--batch-size", type=int, help="Faces per step.  [default: 8]")
@click.option("--steps", type=int, help="Total training steps (G+D updates).  [default: 200000]")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder: checkpoints, logs, sample grids.  "
              "[default: runs/ours-gan]")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option("--psi", help="Identity network Psi whose features are Z_id: facenet (the paper's) or sface (offline). "
              " [default: facenet]")
@click.option("--width", type=int, help="Base channel width of E and T.  [default: 64]")
@click.option("--perceptual", type=click.Choice(["auto", "vgg19", "vgg16", "none"]),
              help="Backbone of the perceptual loss L3.  [default: auto]")
@click.option("--device", help="auto, cpu, cuda, cuda:1 ...  [default: auto]")
@click.option("--amp/--no-amp", default=None, help="float16 mixed precision on CUDA.  [default: on]")
@click.option("--lr-g", type=float, help="Adam learning rate of G.  [default: 1e-4]")
@click.option("--lr-d", type=float, help="Adam learning rate of D.  [default: 4e-4]")
@click.option("--limit", type=int, help="Use only the first N images of the dataset.")
@click.option("--seed", type=int, help="Seed of initialisation, batches and splits.  [default: 0]")
@click.option("--log-every", type=int, help="Console log cadence (steps).")
@click.option("--sample-every", type=int, help="Sample grid cadence (steps).")
@click.option("--ckpt-every", type=int, help="Checkpoint cadence (steps).")
@click.option("--eval-every", type=int, help="Validation / best-checkpoint cadence (steps).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Any other config field (repeatable).")
def train_command(method: str, resume: bool, sets: tuple[str, ...], dataset_args: tuple[str, ...],
                  **options: Any) -> None:
    """Train the generator of METHOD (only 'ours') on aligned faces; see docs in bench.methods.ours.gan.train."""
    from bench.errors import BenchError
    from bench.options import parse_key_values

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        overrides = {k: v for k, v in options.items() if v is not None}
        if dataset_args:
            parse_key_values(dataset_args, what="--dataset-arg")  # checks the form
            overrides["dataset_args"] = ",".join(dataset_args)
        overrides.update(parse_key_values(sets, what="--set"))
        result = _run(overrides, resume)
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"trained to step {result.step}: {result.last}" + (f" (best: {result.best})" if result.best else ""))


def _run(overrides: dict[str, Any], resume: bool) -> Any:
    from pathlib import Path

    from bench.methods.ours.gan.config import TrainConfig, apply_overrides, config_from_dict
    from bench.methods.ours.gan.train import load_checkpoint, run_training

    if "width" in overrides:  # one knob for both widths; --set disc_width=... still wins
        overrides.setdefault("disc_width", overrides["width"])
    base = TrainConfig()
    if resume:
        out = Path(str(overrides.get("out", base.out))).expanduser()
        base = config_from_dict(load_checkpoint(out / "checkpoints" / "last.pt")["config"])
    config = apply_overrides(base, overrides)
    return run_training(config, resume=resume)


#: the name ``bench/cli.py`` attaches as ``bench train``
train = train_command

if __name__ == "__main__":  # pragma: no cover - `python -m bench.methods.ours.gan.cli train ...` before it is wired
    train_command()

"""``bench train-attributes``: train the ethnicity / makeup attribute heads on frozen SFace features.

The paper measures attribute preservation with "pre-trained classifiers [15]" (Sec. 4). No public pretrained
classifier exists for CelebA's ``Heavy_Makeup``, and the FairFace ResNet-34 sits in a Google Drive folder, so this
command trains the heads of :mod:`bench.models.attributes` for users who have the labelled photos:

* ``--task makeup``: CelebA / CelebA-HQ ``list_attr_celeba.txt`` (column ``Heavy_Makeup``, 1 / -1) or its CSV form;
* ``--task ethnicity``: a FairFace label CSV (columns ``file`` and ``race``, the 7 FairFace groups), or any CSV with
  ``file`` and ``label`` columns (class names or indices).

Each photo goes through the face pipeline (YuNet, 5-point alignment; geometry cached by image hash) or, with
``--aligned``, is taken as an already aligned 112x112 ArcFace crop. Features: SFace's last-convolution map (global
average pooled, 1024) and its 128-d embedding. The head (Linear-ReLU-Dropout-Linear on standardised features) is
trained with class-weighted cross-entropy and AdamW; a held-out split reports accuracy and balanced accuracy. The
file is written where the models look for it (``$BENCH_HOME/weights/<task>-head.pt``) unless ``--out`` is given.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.errors import ConfigError, DataError

__all__ = ["HeadResult", "read_labels", "save_head", "train_attributes", "train_head"]

log = logging.getLogger(__name__)

_FAIRFACE_ALIASES = {"east": "East Asian", "latino": "Latino_Hispanic", "latino hispanic": "Latino_Hispanic",
                     "middle eastern": "Middle Eastern", "southeast asian": "Southeast Asian"}


def _classes(task: str) -> list[str]:
    from bench.models.attributes import HEAD_SPECS

    if task not in HEAD_SPECS:
        raise ConfigError(f"--task must be one of {', '.join(HEAD_SPECS)}, got {task!r}")
    return list(HEAD_SPECS[task][1])


def _class_index(value: str, classes: list[str], where: str) -> int:
    v = value.strip()
    if v.lstrip("-").isdigit():
        i = int(v)
        if len(classes) == 2 and i == -1:  # CelebA's negative label
            return 0
        if 0 <= i < len(classes):
            return i
    lowered = {c.lower(): k for k, c in enumerate(classes)}
    name = _FAIRFACE_ALIASES.get(v.lower(), v).lower()
    if name in lowered:
        return lowered[name]
    raise DataError(f"{where}: label {value!r} is not one of {', '.join(classes)} (or their indices)")


def read_labels(path: str | Path, task: str, attr: str | None = None) -> list[tuple[str, int]]:
    """(relative image path, class index) pairs from a CelebA attribute file or a label CSV.

    Raises:
        DataError: an unreadable file, a missing column, or an unknown label (naming file and line).
    """
    p = Path(path)
    classes = _classes(task)
    column = attr or ("Heavy_Makeup" if task == "makeup" else "race")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read labels ({exc})") from None
    rows = [ln for ln in lines if ln.strip()]
    if not rows:
        raise DataError(f"{p}: empty label file")
    out: list[tuple[str, int]] = []
    if p.suffix.lower() != ".csv" and rows[0].strip().isdigit():  # CelebA list_attr_celeba.txt
        names = rows[1].split()
        if column not in names:
            raise DataError(f"{p}: no attribute {column!r} (has {', '.join(names[:6])}, ...)")
        j = names.index(column)
        for n, row in enumerate(rows[2:], start=3):
            parts = row.split()
            if len(parts) != len(names) + 1:
                raise DataError(f"{p}:{n}: expected a file name and {len(names)} values, got {len(parts)} fields")
            out.append((parts[0], _class_index(parts[j + 1], classes, f"{p}:{n}")))
        return out
    reader = csv.DictReader(rows)
    fields = [f.strip() for f in reader.fieldnames or []]
    file_col = next((c for c in ("file", "image_id", "path", "filename") if c in fields), None)
    label_col = column if column in fields else ("label" if "label" in fields else None)
    if file_col is None or label_col is None:
        raise DataError(f"{p}: needs a file column (file/image_id/path) and a {column!r} or 'label' column; "
                        f"has {', '.join(fields)}")
    for n, row in enumerate(reader, start=2):
        out.append((row[file_col].strip(), _class_index(row[label_col], classes, f"{p}:{n}")))
    return out


@dataclass
class HeadResult:
    """A trained head and its figures."""

    state_dict: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    hidden: int
    metrics: dict[str, float]


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in range(n_classes) if np.any(y == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


def train_head(features: np.ndarray, labels: np.ndarray, n_classes: int, *, hidden: int = 256, epochs: int = 30,
               lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256, val_fraction: float = 0.1,
               seed: int = 0, device: str = "cpu") -> HeadResult:
    """Train :func:`bench.models.attributes.build_head` on (N, D) features with class-weighted cross-entropy."""
    import torch

    from bench.models.attributes import build_head

    x = np.asarray(features, np.float32)
    y = np.asarray(labels, np.int64)
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError(f"need at least 2 labelled faces with features, got {len(x)} features / {len(y)} labels")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = round(len(x) * val_fraction) if len(x) >= 10 else 0
    val, tr = order[:n_val], order[n_val:]
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0) + 1e-6
    counts = np.bincount(y[tr], minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)

    torch.manual_seed(seed)
    head = build_head(x.shape[1], n_classes, hidden).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32, device=device))
    xt = torch.from_numpy((x - mean) / std).to(device)
    yt = torch.from_numpy(y).to(device)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(max(1, int(epochs))):
        head.train()
        perm = torch.as_tensor(tr)[torch.randperm(len(tr), generator=gen)]
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size].to(device)
            loss = loss_fn(head(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(len(tr), 1))
    head.eval()
    with torch.no_grad():
        pred = head(xt).argmax(dim=1).cpu().numpy()
    metrics = {
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "train_accuracy": float((pred[tr] == y[tr]).mean()),
        "val_accuracy": float((pred[val] == y[val]).mean()) if n_val else float("nan"),
        "val_balanced_accuracy": _balanced_accuracy(pred[val], y[val], n_classes) if n_val else float("nan"),
        "n_train": float(len(tr)),
        "n_val": float(n_val),
    }
    state = {k: v.detach().cpu() for k, v in head.state_dict().items()}
    return HeadResult(state, mean.astype(np.float32), std.astype(np.float32), hidden, metrics)


def save_head(path: str | Path, task: str, result: HeadResult, features_name: str, source: str = "") -> Path:
    """Write a head file that :class:`bench.models.attributes.Makeup` / ``Ethnicity`` load (weights_only)."""
    import io

    import torch

    from bench.imageio import atomic_write_bytes

    blob = {
        "format": "bench-attribute-head",
        "version": 1,
        "task": task,
        "classes": _classes(task),
        "features": features_name,
        "in_dim": int(result.mean.shape[0]),
        "hidden": int(result.hidden),
        "state_dict": result.state_dict,
        "mean": torch.from_numpy(result.mean),
        "std": torch.from_numpy(result.std),
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "source": source,
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _features_for(items: list[tuple[str, int]], images: Path, aligned: bool, device: str, batch_size: int
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """SFace features of every readable face; returns (features, labels, counts of skipped images by reason)."""
    import cv2

    from bench.errors import ImageError
    from bench.imageio import read_image
    from bench.models.attributes import SFaceFeatures

    extractor = SFaceFeatures(device=device, batch_size=batch_size)
    pipe = None
    if not aligned:
        from bench.face.pipeline import FacePipeline, PipelineConfig

        pipe = FacePipeline(PipelineConfig(landmarks68=None), device=device)
    feats, labels, buf_x, buf_l, buf_y = [], [], [], [], []
    skipped: dict[str, int] = {}

    def flush() -> None:
        if not buf_x:
            return
        if aligned:
            feats.append(extractor.from_aligned(np.stack(buf_x)))
        else:
            feats.append(extractor(np.stack(buf_x), np.stack(buf_l)))
        labels.extend(buf_y)
        buf_x.clear()
        buf_l.clear()
        buf_y.clear()

    with click.progressbar(items, label="faces", show_pos=True) as bar:
        for rel, label in bar:
            path = images / rel
            try:
                img = read_image(path)
                if aligned:
                    buf_x.append(cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA))
                else:
                    assert pipe is not None
                    face = pipe.process(img, name=str(path))
                    buf_x.append(face.crop)
                    buf_l.append(face.landmarks5)
                buf_y.append(label)
            except ImageError as exc:
                skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
                continue
            if len(buf_x) >= batch_size:
                flush()
    flush()
    x = np.concatenate(feats) if feats else np.zeros((0, extractor.dim), np.float32)
    return x, np.asarray(labels, np.int64), skipped


@click.command("train-attributes")
@click.option("--task", type=click.Choice(["ethnicity", "makeup"]), required=True, help="Which head to train.")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder the label file's image paths are relative to.")
@click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CelebA list_attr_celeba.txt (makeup) or a CSV with file + race/label columns (ethnicity).")
@click.option("--attr", default=None, help="Label column (default: Heavy_Makeup for makeup, race for ethnicity).")
@click.option("--aligned", is_flag=True, help="Images are already 112x112 ArcFace-aligned crops (no detection).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file (default: where the model looks, $BENCH_HOME/weights/<task>-head.pt).")
@click.option("--max-images", type=click.IntRange(min=0), default=0, show_default=True, help="0 = all.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
def train_attributes(task: str, images_dir: Path, labels_file: Path, attr: str | None, aligned: bool,
                     out: Path | None, max_images: int, epochs: int, batch_size: int, lr: float, weight_decay: float,
                     hidden: int, val_fraction: float, seed: int, device: str) -> None:
    """Train the ethnicity / makeup attribute head on frozen SFace features of labelled face photos."""
    from bench.models.attributes import HEAD_SPECS, SFaceFeatures
    from bench.models.base import resolve_device
    from bench.models.hub import get_spec, target_path

    device = resolve_device(device)
    items = read_labels(labels_file, task, attr)
    if max_images:
        items = items[:max_images]
    classes = _classes(task)
    click.echo(f"{len(items)} labelled images from {labels_file}; classes: {', '.join(classes)}")
    x, y, skipped = _features_for(items, images_dir, aligned, device, min(batch_size, 64))
    if skipped:
        click.echo("skipped: " + ", ".join(f"{n} x {reason}" for reason, n in sorted(skipped.items())))
    if len(x) < 2:
        raise ConfigError(f"only {len(x)} usable faces in {images_dir}; nothing to train on")
    counts = np.bincount(y, minlength=len(classes))
    click.echo("faces per class: " + ", ".join(f"{c}={n}" for c, n in zip(classes, counts)))
    result = train_head(x, y, len(classes), hidden=hidden, epochs=epochs, lr=lr, weight_decay=weight_decay,
                        batch_size=batch_size, val_fraction=val_fraction, seed=seed, device=device)
    dest = out or target_path(get_spec(HEAD_SPECS[task][0]))
    save_head(dest, task, result, SFaceFeatures.name, source=f"{labels_file.name} ({len(x)} faces)")
    m = result.metrics
    click.echo(f"loss {m['first_loss']:.4f} -> {m['final_loss']:.4f}; train accuracy {m['train_accuracy']:.3f}; "
               f"held-out accuracy {m['val_accuracy']:.3f} (balanced {m['val_balanced_accuracy']:.3f}, "
               f"n={int(m['n_val'])})")
    click.echo(f"wrote {dest}")

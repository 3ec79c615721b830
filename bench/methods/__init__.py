"""Registry of anonymisation methods. A new method is one module plus one ``METHODS.register`` line here.

Named variants are the same target with other option defaults (``blur-s8`` is ``blur`` with ``sigma=8``).
"""

from bench.registry import Registry

METHODS: Registry = Registry("method")
_reg = METHODS.register

# -- reference and classic baselines (bench/methods/baselines.py) -----------------------------------------------------
_reg("identity", "bench.methods.baselines:Identity", doc="No-op reference: returns the input (ReID ~100%).",
     aliases=("none", "original"))
_reg("blur", "bench.methods.baselines:Blur", doc="Gaussian blur of the face region (paper's 'Blurring' row).")
_reg("blur-s4", "bench.methods.baselines:Blur", doc="Gaussian blur, sigma 4 px.", sigma=4.0)
_reg("blur-s8", "bench.methods.baselines:Blur", doc="Gaussian blur, sigma 8 px (= blur).", sigma=8.0)
_reg("blur-s16", "bench.methods.baselines:Blur", doc="Gaussian blur, sigma 16 px.", sigma=16.0)
_reg("pixelate", "bench.methods.baselines:Pixelate", doc="Mosaic of the face region (paper's 'Pixelation' row).",
     aliases=("pixelation", "mosaic"))
_reg("pixelate-8", "bench.methods.baselines:Pixelate", doc="Mosaic, 8x8 px blocks.", block=8)
_reg("pixelate-16", "bench.methods.baselines:Pixelate", doc="Mosaic, 16x16 px blocks (= pixelate).", block=16)
_reg("pixelate-32", "bench.methods.baselines:Pixelate", doc="Mosaic, 32x32 px blocks.", block=32)
_reg("mask", "bench.methods.baselines:Mask", doc="Solid fill over the face region.", aliases=("blackout",))
_reg("mask-grey", "bench.methods.baselines:Mask", doc="Solid mid-grey fill over the face region.", color=(128, 128, 128))
_reg("noise", "bench.methods.baselines:Noise", doc="Additive Gaussian noise on the face region (seeded).")
_reg("noise-s25", "bench.methods.baselines:Noise", doc="Additive Gaussian noise, sigma 25/255.", sigma=25.0)
_reg("noise-s50", "bench.methods.baselines:Noise", doc="Additive Gaussian noise, sigma 50/255.", sigma=50.0)
# -- external methods evaluated from their saved outputs (bench/methods/folder.py) ------------------------------------
_reg("folder", "bench.methods.folder:Folder", doc="Outputs of any external method read from a folder (root=PATH).",
     aliases=("external",))

"""Registry of metrics. A new metric is one module plus one ``METRICS.register`` line here.

Metrics tagged ``default`` form the default suite of ``bench run`` (each one only when its models are available).
"""

from bench.registry import Registry

METRICS: Registry = Registry("metric")
_reg = METRICS.register

_reg("ssim", "bench.metrics.image_quality:SSIM", doc="Structural similarity (Gaussian 11, sigma 1.5), higher better.",
     tags=("default",))
_reg("psnr", "bench.metrics.image_quality:PSNR", doc="Peak signal-to-noise ratio in dB (capped at 100), higher better.",
     tags=("default",))

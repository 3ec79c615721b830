"""Registry of metrics. A new metric is one module plus one ``METRICS.register`` line here.

Metrics tagged ``default`` form the default suite of ``bench run`` (each one only when its models are available).
Definitions of every number: PROTOCOL.md at the repository root.
"""

from bench.registry import Registry

METRICS: Registry = Registry("metric", group="bench.metrics")
_reg = METRICS.register

_reg("ssim", "bench.metrics.image_quality:SSIM", doc="Structural similarity (Gaussian 11, sigma 1.5), higher better.",
     tags=("default",))
_reg("psnr", "bench.metrics.image_quality:PSNR", doc="Peak signal-to-noise ratio in dB (capped at 100), higher better.",
     tags=("default",))
_reg("reid", "bench.metrics.identity:IdentityRates", aliases=("ids", "identity-rates"), tags=("default",),
     doc="ReID, gallery ReID, IDS (any/rank-1) per recogniser x threshold, fixed and FAR-calibrated; lower better.")
_reg("lpips", "bench.metrics.perceptual:LPIPS", tags=("default",),
     doc="LPIPS v0.1 (AlexNet default, net=vgg option) on the 256 crops in [-1, 1], lower better.")
_reg("attributes", "bench.metrics.attributes:AttributePreservation", aliases=("attribute",), tags=("default",),
     doc="Attribute agreement x vs z (expression, ethnicity, gender, age group, makeup) and their mean, higher better.")
_reg("detection", "bench.metrics.detection:DetectionRate", tags=("default",),
     doc="Share of anonymised crops in which a face is detected (YuNet default), higher better.")

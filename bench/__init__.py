"""bench: a benchmark and evaluation harness for face anonymization.

Reference implementation of Kuang et al., "Facial Identity Anonymization via Intrinsic and Extrinsic Attention
Distraction", CVPR 2024. Importing the package is cheap: heavy libraries load when a plugin is first built.
"""

__version__ = "0.1.0"

"""The attention-distraction anonymizer of Kuang et al., CVPR 2024 ("ours")."""

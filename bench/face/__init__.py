"""Face geometry: alignment templates and transforms, face masks, and the preprocessing pipeline."""

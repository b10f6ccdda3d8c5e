"""Batch training: datasets, model recipes, champion/challenger evaluation (pure), and the
MLflow model registry (the one IO module here)."""

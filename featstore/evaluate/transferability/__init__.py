"""Transferability: estimators scored without training, and the transferability task."""

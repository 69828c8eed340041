"""Probes: classifiers trained on cached features (one protocol, sklearn / torch / kNN back ends)."""

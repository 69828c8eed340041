"""Representational similarity: CKA / RSA measures and the similarity task."""

"""Features an evaluation reads: entry selection, stored pooling, transform chains, PCA."""

"""A team module that fails while it is imported (CLI tests)."""

raise RuntimeError("CUDA_VISIBLE_DEVICES is not set")

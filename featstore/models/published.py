"""Published facts about bundled networks that reports read without building them (no torch)."""

from __future__ import annotations

__all__ = ["IMAGENET_TOP1"]

# ImageNet top-1 (%) as the weights' publisher reports it (TensorFlow EfficientNet-Lite
# release, tensorflow/tpu models/official/efficientnet/lite): the x axis of the report's
# architecture-vs-transfer plot (Kornblith et al.). A sweep spec may override a value.
IMAGENET_TOP1: dict[str, float] = {
    "efficientnet_lite0": 75.1,
    "efficientnet_lite1": 76.7,
    "efficientnet_lite2": 77.6,
}

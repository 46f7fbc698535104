"""The Fashion-MNIST classifier whose penultimate features give the classifier-feature
Frechet distance (``ccdf.fid``); saved as a folder with ``"format": "ccdf-classifier"``."""

from __future__ import annotations

from torch import Tensor, nn

FORMAT = "ccdf-classifier"


class FashionClassifier(nn.Module):
    """(B, 1, 32, 32) in [0, 1] -> logits (B, classes); ``features`` -> (B, 128)."""

    def __init__(self, classes: int = 10, width: int = 32):
        super().__init__()
        w = width

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

        self.body = nn.Sequential(*block(1, w), *block(w, w), nn.MaxPool2d(2),
                                  *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
                                  *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(4 * w, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(2 * x - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

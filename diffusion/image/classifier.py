"""The judge of generated images: a digit classifier trained on the real training split only.

    judge = train_judge(train_pixels, train_labels)         # (N, C, H, W) in [-1, 1], (N,)
    judge.accuracy(held_out_pixels, held_out_labels)       # its ceiling on real images (~0.98 on the digits)
    probs = judge.probabilities(samples)                   # (B, classes)
    feats = judge.features(samples)                        # (B, 64): the hidden layer, for the Frechet distance

scikit-learn's ``MLPClassifier`` with one hidden layer of 64 ReLU units, trained with a fixed
seed: seconds on a CPU, the same judge every run, and independent of every generator (it never
sees a generated image). Its hidden activations are the feature space of the Frechet distance
(Heusel et al. 2017's FID, with this small network in place of Inception): at most 64 dimensions,
so that a few hundred samples estimate the covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DigitJudge:
    model: object  # sklearn.neural_network.MLPClassifier

    @staticmethod
    def _flat(pixels: torch.Tensor) -> np.ndarray:
        return pixels.detach().float().clamp(-1, 1).flatten(1).cpu().numpy()

    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        return self.model.predict_proba(self._flat(pixels))

    def predict(self, pixels: torch.Tensor) -> np.ndarray:
        return self.model.predict(self._flat(pixels))

    def accuracy(self, pixels: torch.Tensor, labels) -> float:
        return float((self.predict(pixels) == np.asarray(labels)).mean())

    def features(self, pixels: torch.Tensor) -> np.ndarray:
        """(B, 64) hidden-layer activations: ReLU(x W1 + b1), as the network computes them."""
        x = self._flat(pixels)
        return np.maximum(0.0, x @ self.model.coefs_[0] + self.model.intercepts_[0])


def train_judge(pixels: torch.Tensor, labels, seed: int = 0, hidden: int = 64) -> DigitJudge:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-3, max_iter=600, random_state=seed)
    model.fit(pixels.detach().float().flatten(1).cpu().numpy(), np.asarray(labels))
    return DigitJudge(model)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two sets of features (N, D), (M, D)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # ReLU features that never fire make the covariances singular: a small ridge on both keeps the
    # square root defined (FID's reference code falls back to the same when it is not).
    ridge = np.eye(a.shape[1]) * 1e-6
    root = np.real(linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge)))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def nearest_distances(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(B,) Euclidean distance of every query image to its nearest reference image (pixels in [-1, 1])."""
    q, r = queries.float().flatten(1), references.float().flatten(1)
    return torch.cdist(q, r).min(dim=1).values

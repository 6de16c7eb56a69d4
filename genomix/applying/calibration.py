"""Temperature scaling: one scalar T fitted on validation so that softmax(log p / T) is calibrated.

Networks trained with cross-entropy are usually over-confident; dividing their log-probabilities by a
T > 1 fixes most of that without changing any prediction's ranking (Guo et al., 2017). The expected
calibration error (ECE) measures what is left: the gap between confidence and accuracy over bins.
"""

from __future__ import annotations

import numpy as np
import torch

ECE_BINS = 15


def calibrated(mean_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probabilities from the mean of log-softmax rows (of a record's windows and strands): renormalised,
    then divided by the temperature and renormalised again. Differentiable; the scoring path's one rule."""
    return torch.log_softmax(torch.log_softmax(mean_log_probs, -1) / temperature, -1)


def calibrate(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated log-probabilities of an array of log-probabilities (`calibrated`)."""
    return calibrated(torch.from_numpy(log_probs), temperature).numpy()


def apply_temperature(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities from log-probabilities."""
    return np.exp(calibrate(log_probs, temperature))


def fit_temperature(log_probs: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of the labels y."""
    scores, target = torch.from_numpy(log_probs).double(), torch.from_numpy(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(nll)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_bins (bin size / n) · |accuracy − mean confidence|, binning by the top probability."""
    confidence, correct = probs.max(1), probs.argmax(1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [abs(correct[which == b].mean() - confidence[which == b].mean()) * (which == b).mean()
            for b in range(bins) if (which == b).any()]
    return float(sum(gaps))

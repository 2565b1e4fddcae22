"""A small CNN on scikit-learn's 8x8 digits with cross-entropy: predicted against trained.

What it shows: the linearisation is not limited to squared losses or to MLPs. A two-layer
convolutional network with ten outputs is linearised at initialisation on 100 training
images (``ntkdyn.linearize(..., loss="cross-entropy", X_test=...)``); its prediction of the
training loss and of the test accuracy under gradient descent is printed next to the real
network trained by ``ntkdyn.train``. The cross-entropy has no closed per-mode form, so the
prediction iterates the exact coefficient recursion of the linearised model in function space
(``O((n C)^2)`` per step, docs/mathematics.md §9.2).

At 32 channels the network leaves its prediction after about 25 steps (and then learns faster
than it); ``Linearized.validity`` (``ntkdyn.validity``), a short probe of the real network's
kernel and ReLU gates, says so before training, and ``validity.from_run`` finds the step.

Inputs are the ``(n, 1, 8, 8)`` images; ``ntkdyn.load_dataset("digits")`` gives the flattened
rows with the digit as label (pixels scaled to [0, 1]).

Run: ``python docs/examples/cnn_digits.py`` (``NTKDYN_EXAMPLE_QUICK=1`` for a fast run).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import ntkdyn
from ntkdyn import validity

CLASSES = 10


class SmallCNN(nn.Module):
    """conv 3x3 -> ReLU -> conv 3x3 -> ReLU -> 2x2 average pool -> linear, in the NTK
    parameterisation: weights drawn N(0, 1) and scaled by ``1/sqrt(fan_in)`` in the forward
    pass, so the kernel has a limit as the channels grow (with PyTorch's default layers the same
    network learns features at once and the linearisation says little)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(channels, 1, 3, 3))
        self.b1 = nn.Parameter(torch.zeros(channels))
        self.w2 = nn.Parameter(torch.randn(channels, channels, 3, 3))
        self.b2 = nn.Parameter(torch.zeros(channels))
        self.w3 = nn.Parameter(torch.randn(CLASSES, channels * 16))
        self.b3 = nn.Parameter(torch.zeros(CLASSES))
        self.scales = (1 / 3, 1 / math.sqrt(9 * channels), 1 / math.sqrt(16 * channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1, s2, s3 = self.scales
        h = torch.relu(F.conv2d(x, s1 * self.w1, self.b1, padding=1))
        h = torch.relu(F.conv2d(h, s2 * self.w2, self.b2, padding=1))
        h = F.avg_pool2d(h, 2).flatten(1)  # 8x8 -> 4x4
        return h @ (s3 * self.w3).T + self.b3


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose largest logit is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def main(quick: bool | None = None) -> dict[str, float]:
    """Run the example; returns the numbers it prints (the tests check them)."""
    if quick is None:
        quick = os.environ.get("NTKDYN_EXAMPLE_QUICK") == "1"
    n_train, n_test = (40, 20) if quick else (100, 50)
    channels, steps, probe_steps = (8, 20, 10) if quick else (32, 100, 20)

    data = ntkdyn.load_dataset("digits", n=n_train + n_test, seed=0, normalize=False)
    images = torch.tensor(data.X).reshape(-1, 1, 8, 8)
    labels = data.y.astype(np.int64)  # the digit itself, 0..9
    X, X_test = images[:n_train], images[n_train:]
    y, y_test = torch.tensor(labels[:n_train]), labels[n_train:]

    torch.manual_seed(0)
    net = SmallCNN(channels).double()
    lin = ntkdyn.linearize(net, X, y, loss="cross-entropy", X_test=X_test)

    # At initialisation the softmax is nearly uniform: its curvature is 1/C per row and the loss
    # is a mean over n rows, so GD on the linearised model is stable below lr = 2 n C / lam_max.
    lam_max = float(np.linalg.eigvalsh(lin.kernel.K)[-1])
    rule = ntkdyn.GD(lr=n_train * CLASSES / lam_max)  # half of that limit
    checkpoints = [round(steps * j / 4) for j in range(5)]
    predicted = lin.predict(rule, steps, outputs_at=checkpoints)
    (run,) = ntkdyn.train(
        net,
        X,
        y,
        rule,
        steps,
        loss="cross-entropy",
        outputs_at=checkpoints,
        X_test=X_test,
        diagnostics=False,
    )

    assert predicted.test_outputs is not None and run.test_outputs is not None
    print(f"CNN ({channels} channels) on {n_train} digits, cross-entropy, {rule.spec}")
    header = ("step", "pred. loss", "net loss", "pred. test acc", "net test acc")
    print("{:>5} {:>11} {:>9} {:>15} {:>13}".format(*header))
    for j, k in enumerate(checkpoints):
        acc_pred = accuracy(predicted.test_outputs[j], y_test)
        acc_net = accuracy(run.test_outputs[j], y_test)
        print(
            f"{k:>5} {predicted.loss[k]:>11.4f} {run.losses[k]:>9.4f} "
            f"{acc_pred:>15.2f} {acc_net:>13.2f}"
        )

    # Where the network leaves a 10% band around the prediction, and what the cheap check
    # before training (a short probe of the real network's kernel and ReLU gates) said.
    departure = validity.from_run(predicted, run.losses).departure_step
    record = lin.validity(rule, steps=probe_steps, warn=False)
    left = "never" if departure is None else f"at step {departure}"
    print(f"the loss leaves the 10% band around the prediction {left}; {probe_steps}-step probe:")
    print(record.summary())
    return {
        "departure_step": np.nan if departure is None else float(departure),
        "warning_step": np.nan if record.warning_step is None else float(record.warning_step),
        "initial_loss": float(predicted.loss[0]),
        "final_loss_predicted": float(predicted.loss[-1]),
        "final_loss_network": float(run.losses[-1]),
        "test_accuracy_predicted": accuracy(predicted.test_outputs[-1], y_test),
        "test_accuracy_network": accuracy(run.test_outputs[-1], y_test),
    }


if __name__ == "__main__":
    main()

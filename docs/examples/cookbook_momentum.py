"""The neural-tangents cookbook regression, done in torch: GD and momentum with a test set.

What it shows: the 1-D task of the neural-tangents cookbook (5 noisy samples of ``sin x`` on
``[-pi, pi]``, 50 noiseless test points) and its network (two hidden layers of width 512 with
``erf`` activations, NTK parameterisation with ``W_std = 1.5``, ``b_std = 0.05``), trained by
gradient descent and by heavy-ball momentum (``beta = 0.9``). For each optimizer the script
prints, at a few steps, the exact prediction of the linearised network
(``ntkdyn.linearize(...).predict``), the limiting ODE (``.ode``) and the trained network
(``ntkdyn.train``): training loss and test error.

Loss and learning rate: the cookbook minimises ``1/2 mean (f - y)^2`` with ``lr = 0.1``; ntkdyn's
``"mse"`` is ``mean (f - y)^2``, twice that, so ``lr = 0.05`` here traces the same trajectory
(only ``lr`` times the loss factor enters an update, docs/mathematics.md §0).

neural-tangents is not needed here. It has a closed form for gradient descent on the MSE
(``nt.predict.gradient_descent_mse``) and ODE solutions for other losses and for momentum
(``nt.predict.gradient_descent(..., momentum=...)``), all in continuous time; the automated
comparison of ntkdyn's limiting ODEs with them lives in ``tests/test_neural_tangents.py``.

Run: ``python docs/examples/cookbook_momentum.py`` (``NTKDYN_EXAMPLE_QUICK=1`` for a fast run).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

import ntkdyn

W_STD, B_STD = 1.5, 0.05


class ErfNet(nn.Module):
    """``Dense(width) -> erf -> Dense(width) -> erf -> Dense(1)`` in the NTK parameterisation:
    every weight and bias drawn N(0, 1); a layer computes ``W_STD / sqrt(fan_in) W x + B_STD b``."""

    def __init__(self, width: int, generator: torch.Generator) -> None:
        super().__init__()
        sizes = [(width, 1), (width, width), (1, width)]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(*s, generator=generator, dtype=torch.float64)) for s in sizes
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.randn(s[0], generator=generator, dtype=torch.float64)) for s in sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ (W_STD / math.sqrt(w.shape[1]) * w).T + B_STD * b
            if i < len(self.weights) - 1:
                x = torch.erf(x)
        return x[:, 0]


def cookbook_data(seed: int = 10) -> tuple[torch.Tensor, ...]:
    """5 training points ``x ~ U(-pi, pi)``, ``y = sin x + N(0, 0.1^2)``; 50 test points on a
    grid, ``y = sin x`` (the cookbook's task; its own random draws differ)."""
    rng = np.random.default_rng(seed)
    x_train = rng.uniform(-np.pi, np.pi, size=(5, 1))
    y_train = np.sin(x_train[:, 0]) + 0.1 * rng.standard_normal(5)
    x_test = np.linspace(-np.pi, np.pi, 50)[:, None]
    return tuple(torch.tensor(a) for a in (x_train, y_train, x_test, np.sin(x_test[:, 0])))


def main(quick: bool | None = None) -> dict[str, dict[str, float]]:
    """Run the example; returns, per optimizer, the final numbers it prints."""
    if quick is None:
        quick = os.environ.get("NTKDYN_EXAMPLE_QUICK") == "1"
    width, steps = (128, 200) if quick else (512, 2000)
    X, y, X_test, y_test = cookbook_data()
    net = ErfNet(width, torch.Generator().manual_seed(0))
    lin = ntkdyn.linearize(net, X, y, loss="mse", X_test=X_test)

    checkpoints = [round(steps * j / 4) for j in range(5)]
    results = {}
    for rule in (ntkdyn.GD(lr=0.05), ntkdyn.HeavyBall(lr=0.05, beta=0.9)):
        predicted = lin.predict(rule, steps, outputs_at=checkpoints)
        spec = rule.ode()
        assert spec is not None  # GD and HB have limiting ODEs
        ode = lin.ode(rule, spec.times(rule.lr, np.array(checkpoints)))
        (run,) = ntkdyn.train(
            net,
            X,
            y,
            rule,
            steps,
            loss="mse",
            outputs_at=checkpoints,
            X_test=X_test,
            diagnostics=False,
        )
        assert predicted.test_outputs is not None and ode.test_outputs is not None
        assert run.test_outputs is not None

        def test_rmse(outputs: np.ndarray) -> float:
            return float(np.sqrt(np.mean((outputs[:, 0] - y_test.numpy()) ** 2)))

        print(f"\n{rule.spec}, width {width}: train loss and test RMSE")
        header = ("step", "exact", "ODE", "network", "exact", "network")
        print("{:>6} {:>10} {:>10} {:>10} | {:>7} {:>7}".format(*header))
        for j, k in enumerate(checkpoints):
            print(
                f"{k:>6} {predicted.loss[k]:>10.3e} {ode.loss[j]:>10.3e} {run.losses[k]:>10.3e}"
                f" | {test_rmse(predicted.test_outputs[j]):>7.4f}"
                f" {test_rmse(run.test_outputs[j]):>7.4f}"
            )
        results[rule.name] = {
            "initial_loss": float(predicted.loss[0]),
            "final_loss_predicted": float(predicted.loss[-1]),
            "final_loss_ode": float(ode.loss[-1]),
            "final_loss_network": float(run.losses[-1]),
            "test_rmse_predicted": test_rmse(predicted.test_outputs[-1]),
            "test_rmse_network": test_rmse(run.test_outputs[-1]),
            "test_output_gap": float(
                np.max(np.abs(predicted.test_outputs[-1] - run.test_outputs[-1]))
            ),
        }
    return results


if __name__ == "__main__":
    main()

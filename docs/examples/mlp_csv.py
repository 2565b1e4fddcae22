"""An MLP on your own CSV file: the linearised prediction against the trained network.

What it shows: ``ntkdyn.linearize`` takes an ordinary ``nn.Module`` (here a one-hidden-layer
MLP with biases and PyTorch's default initialisation) and a data set read from a CSV file, and
predicts *before any training* the loss and the outputs on the training and the test rows at
every step of gradient descent on the ``"mse"`` loss. ``ntkdyn.train`` then trains the real
network and records the same quantities; the script prints both side by side.

The CSV (three features, the label in the last column, a header row) is written to a
temporary folder first, so the example needs no file of its own; point ``load_dataset`` at
``"csv:your.csv"`` to use yours.

Run: ``python docs/examples/mlp_csv.py`` (``NTKDYN_EXAMPLE_QUICK=1`` for a fast run).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

import ntkdyn


def write_csv(path: Path, n: int, seed: int = 0) -> None:
    """A small regression table: ``y = sin(2 x1) + x2 x3 / 2`` plus a little noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, 3))
    y = np.sin(2.0 * X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.05 * rng.standard_normal(n)
    table = np.column_stack([X, y])
    np.savetxt(path, table, delimiter=",", header="x1,x2,x3,y", comments="", fmt="%.6f")


def main(quick: bool | None = None) -> dict[str, float]:
    """Run the example; returns the numbers it prints (the tests check them)."""
    if quick is None:
        quick = os.environ.get("NTKDYN_EXAMPLE_QUICK") == "1"
    n_train, n_test = (30, 10) if quick else (80, 40)
    width, steps = (256, 60) if quick else (2048, 500)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        write_csv(path, n_train + n_test)
        data = ntkdyn.load_dataset(f"csv:{path}", normalize=False)
    X, y = torch.tensor(data.X), torch.tensor(data.y)
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)
    ).double()

    # The prediction, from the kernel at initialisation only.
    lin = ntkdyn.linearize(net, X_train, y_train, loss="mse", X_test=X_test)
    # only the largest eigenvalue of K = c H (in the units of the lr) sets the GD limit
    lam_max = lin.kernel_model().eigenvalues[-1:]
    limit = ntkdyn.stability(lam_max, "gd:lr=1").max_stable_lr
    rule = ntkdyn.GD(lr=0.5 * limit)  # half the largest stable step: safely in the linear regime
    checkpoints = sorted({0, steps // 10, steps // 4, steps // 2, steps})
    predicted = lin.predict(rule, steps, outputs_at=checkpoints)

    # The real network, trained by ntkdyn's engine.
    (run,) = ntkdyn.train(
        net,
        X_train,
        y_train,
        rule,
        steps,
        loss="mse",
        outputs_at=checkpoints,
        X_test=X_test,
        diagnostics=False,
    )

    print(f"MLP 3-{width}-1 on {n_train} CSV rows, {rule.spec} (GD limit {limit:.3g})")
    print(f"{'step':>6} {'predicted loss':>15} {'network loss':>13} {'rel. gap':>9}")
    for k in checkpoints:
        gap = run.losses[k] / predicted.loss[k] - 1.0
        print(f"{k:>6} {predicted.loss[k]:>15.5g} {run.losses[k]:>13.5g} {gap:>9.2%}")

    assert predicted.test_outputs is not None and run.test_outputs is not None
    target = y_test.numpy()
    rmse_pred = float(np.sqrt(np.mean((predicted.test_outputs[-1, :, 0] - target) ** 2)))
    rmse_net = float(np.sqrt(np.mean((run.test_outputs[-1, :, 0] - target) ** 2)))
    gap_test = float(np.max(np.abs(predicted.test_outputs[-1] - run.test_outputs[-1])))
    print(f"test RMSE after {steps} steps: predicted {rmse_pred:.4f}, network {rmse_net:.4f}")
    print(f"largest |predicted - network| test output: {gap_test:.2e}")
    return {
        "final_loss_predicted": float(predicted.loss[-1]),
        "final_loss_network": float(run.losses[-1]),
        "initial_loss": float(predicted.loss[0]),
        "test_rmse_predicted": rmse_pred,
        "test_rmse_network": rmse_net,
        "test_output_gap": gap_test,
    }


if __name__ == "__main__":
    main()

"""Benchmark: exact discrete predictor vs stepping the linearised model with torch.optim.

Run as ``python bench/predict.py [--n 1000] [--steps 10000] [--threads 1] [--device cpu]``. For every linear rule family it
times ``predict_discrete`` on a precomputed spectrum (the eigendecomposition is done once and
shared by all rules; its time is printed separately) against training the exactly linear model
``u = J w`` (``J = Q diag(sqrt(lambda))``, ``p = n``, ``J J^T = K``, half-sum loss, float64,
autograd + ``rule.torch``) for the same number of steps, and prints the ratio, the agreement of
the two loss curves (max |dL| / L0) and whether the target ratio (>= 100x for constant
coefficients, >= 10x for scheduled Nesterov) is met. Both sides run single-threaded by default
(``--threads``), so the ratio measures work rather than how busy a shared machine is;
``--device cuda`` steps the torch baseline on a GPU instead (the predictor stays on the CPU). K is the two-layer ``H^inf`` (docs/mathematics.md §1.2)
of ``n`` random unit vectors, so its spectrum looks like an NTK's.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from _common import sync
from threadpoolctl import threadpool_limits

from ntkdyn.dynamics import predict_discrete
from ntkdyn.kernels import spectrum
from ntkdyn.optim import GD, HeavyBall, HigherOrderMomentum, Nesterov, NesterovSC, NesterovTorch

TARGET_CONSTANT = 100.0
TARGET_SCHEDULED = 10.0
REPEATS = 3  # best-of for the (fast) predictor


def _kernel(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.sign(rng.standard_normal(n))
    try:
        from ntkdyn.kernels import two_layer_gram

        return two_layer_gram(X), y
    except ImportError:  # docs/mathematics.md §1.2, for unit rows
        G = np.clip(X @ X.T, -1.0, 1.0)
        return G * (np.pi - np.arccos(G)) / (2.0 * np.pi), y


def _torch_run(rule, J, y, steps: int, device: str) -> tuple[float, np.ndarray]:
    Jt, yt = torch.tensor(J, device=device), torch.tensor(y, device=device)
    w = torch.zeros(J.shape[1], dtype=torch.float64, device=device, requires_grad=True)
    opt = rule.torch([w])
    losses = torch.empty(steps + 1, dtype=torch.float64, device=device)
    sync(device)
    start = time.perf_counter()
    for k in range(steps + 1):
        opt.zero_grad()
        loss = 0.5 * ((Jt @ w - yt) ** 2).sum()
        losses[k] = loss.detach()
        if k < steps:
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - start, losses.cpu().numpy()


def _predict_time(spec, e0, rule, steps: int) -> tuple[float, np.ndarray]:
    best, L = np.inf, None
    for _ in range(REPEATS):
        start = time.perf_counter()
        L = predict_discrete(spec, e0, rule, steps)
        best = min(best, time.perf_counter() - start)
    return best, L


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads, both sides")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where the torch baseline runs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        _bench(args)


def _bench(args) -> None:
    print(
        f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
        f"cpu_count {os.cpu_count()} | threads {args.threads} (numpy BLAS and torch)"
    )
    print(
        f"python {platform.python_version()} | numpy {np.__version__} | torch {torch.__version__}"
    )
    if args.device == "cuda":
        print(f"torch baseline on {torch.cuda.get_device_name()}; predictor on the CPU")

    K, y = _kernel(args.n, args.d, args.seed)
    start = time.perf_counter()
    spec = spectrum(K, vectors=True)  # the one kernel path: checks, eigh, clipping
    t_eigh = time.perf_counter() - start
    lam, Q = spec.eigenvalues, spec.eigenvectors
    lr = 1.0 / lam[-1]  # h_max = 1: stable for every rule below
    print(
        f"K: two-layer H^inf, n={args.n}, d={args.d}; lambda_min {lam[0]:.3e}, "
        f"lambda_max {lam[-1]:.3e}; lr = 1/lambda_max; steps {args.steps}"
    )
    print(f"eigh (once, shared by all rules): {t_eigh * 1e3:.1f} ms")

    J = Q * np.sqrt(lam)  # J J^T = K, p = n
    e0 = -y  # u(w = 0) = 0
    rules = [
        GD(lr),
        HeavyBall(lr, beta=0.9),
        NesterovSC(lr, beta=0.9),
        HigherOrderMomentum(lr, b1=0.6, b2=0.2),
        Nesterov(lr, r=3.0),
        NesterovTorch(lr, r=3.0),
    ]
    header = f"{'rule':<24}{'predict ms':>11}{'torch s':>9}{'ratio':>9}{'target':>8}"
    print(header + f"{'max|dL|/L0':>12}  ok")
    for rule in rules:
        t_pred, L_pred = _predict_time(spec, e0, rule, args.steps)
        t_torch, L_torch = _torch_run(rule, J, y, args.steps, args.device)
        ratio = t_torch / t_pred
        target = TARGET_SCHEDULED if rule.constant_from is None else TARGET_CONSTANT
        err = np.max(np.abs(L_pred - L_torch)) / L_torch[0]
        label = f"{rule.name} " + ",".join(f"{k}={v:g}" for k, v in rule.params.items())
        print(
            f"{label:<24}{t_pred * 1e3:>11.1f}{t_torch:>9.2f}{ratio:>8.0f}x"
            f"{target:>7.0f}x{err:>12.1e}  {'yes' if ratio >= target else 'NO'}"
        )


if __name__ == "__main__":
    main()

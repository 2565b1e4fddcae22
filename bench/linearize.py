"""Benchmark of function-space predictions (``ntkdyn.Linearized``); prints ratios measured in
one run and exits non-zero when a target is missed.

Part ``train`` (target >= 10x): ``Linearized.predict`` for ``--steps`` (10,000) Heavy Ball
steps against training the linearised network itself in parameter space
(``ntkdyn.linearized.train_linearized``: one Jacobian-vector and one vector-Jacobian product
through the network per step) for the same steps. Model: the MLP ``64 -> 512 -> 512 -> 10``
(ReLU, biases, PyTorch's default initialisation, float64) on ``--n`` (1000) rows of
scikit-learn's digits, labels 0-9; its full ``(n C, n C)`` empirical NTK from
``ntkdyn.linearize`` (timed on its own line, not part of either side). Cross-entropy (the
general path: one symmetric product per step with the kernel between zero-sum coefficients,
``9,000 x 9,000``) is judged; the squared-loss path (``"mse"`` on one-hot targets: at 10,000
steps one eigendecomposition of the ``10,000 x 10,000`` kernel, at fewer steps a product per
step) is reported as information.
The baseline is timed for ``--baseline-steps`` steps just before and just after the
prediction, and the faster of the two rounds is extrapolated per step (said in the output);
the first of those steps of both sides are compared (max |dL| / L0, outputs).

Part ``nt`` (target >= 5x, needs ``NTKDYN_NT_PYTHON``, the interpreter of an environment with
neural-tangents; skipped without it): one Heavy Ball prediction at 200 output times for
``n = 2000`` (two-layer ``H^inf`` of random unit vectors in ``R^20``, half-sum loss, 200 test
rows, ``lr = 1 / lambda_max``, ``beta = 0.9``), factorisation included, against
neural-tangents' ``predict.gradient_descent(loss, K, y, lr, momentum=beta)`` on the same kernel
(``tests/nt_reference.py`` in a subprocess; its time is that of the call alone, best of two:
it re-traces and compiles its ``odeint`` in every call). Like for like: neural-tangents answers
"HB training outputs at these steps" with the momentum ODE, ntkdyn with the exact discrete
prediction (``predict``), so that pair is judged; ntkdyn's own ODE (``Linearized.ode``, the
same equations as neural-tangents') is timed as information, with the agreement of each pair.

Both sides run on ``--threads`` (1) threads, so neither gets more cores than the other (the
load of a shared machine still moves both; the ratio is of times taken in the same minutes).
Usage: ``python bench/linearize.py [--part all|train|nt] [--n 1000] [--steps 10000]
[--baseline-steps 5] [--hb-steps 300,1000,3000] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.linalg.blas  # noqa: F401  (loaded before threadpool_limits, so that it limits it)
import scipy.sparse.linalg
import torch
from _common import cpu_model
from threadpoolctl import threadpool_info, threadpool_limits

import ntkdyn
from ntkdyn.function_space import output_steps
from ntkdyn.kernels import two_layer_gram
from ntkdyn.linearized import Linearized, linearize, train_linearized
from ntkdyn.losses import resolve_loss
from ntkdyn.optim import HeavyBall

TARGET_TRAIN = 10.0  # predict at least this many times faster than linearised training
TARGET_NT = 5.0  # HB prediction at least this many times faster than neural-tangents
NT_REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "nt_reference.py"


def _lambda_max(K: np.ndarray) -> float:
    top = scipy.sparse.linalg.eigsh(K, k=1, which="LA", return_eigenvectors=False)
    return float(top[0])


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:.1f}x (target >= {target:g}x: {'met' if ratio >= target else 'MISSED'})"


# ------------------------------------------------------------------------------- part "train"


def _train_part(args) -> bool:
    ds = ntkdyn.load_dataset("digits", n=args.n)
    labels = ds.y.astype(np.int64)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    params = sum(p.numel() for p in net.parameters())
    start = time.perf_counter()
    ce = linearize(net, ds.X, labels, loss="cross-entropy")
    print(
        f"model: MLP 64-512-512-10 ReLU ({params:,} parameters, float64) on digits n={args.n}; "
        f"full NTK {ce.kernel.K.shape} by ntkdyn.linearize: {time.perf_counter() - start:.1f} s"
    )
    lam = _lambda_max(ce.kernel.K)
    n, C = ce.kernel.shape
    mse = Linearized(
        ce.kernel, ce.F0, np.eye(C)[labels], resolve_loss("mse"), model=ce.model, inputs=ce.inputs
    )
    # lr: 1/(curvature); cross-entropy's Hessian in F is <= 1/(2n), mse's is 2/(nC)
    ok = _train_case(args, ce, HeavyBall(2 * n / lam, beta=0.9), judged=True)
    _train_case(args, mse, HeavyBall(n * C / (2 * lam), beta=0.9), judged=False)
    return ok


def _baseline(lin: Linearized, rule: HeavyBall, few: int):
    """Seconds per step of ``few`` steps of linearised training, and its prediction record."""
    start = time.perf_counter()
    reference = train_linearized(lin, rule, few, outputs_at=[few])
    return (time.perf_counter() - start) / few, reference


def _train_case(args, lin: Linearized, rule: HeavyBall, *, judged: bool) -> bool:
    steps, few = args.steps, args.baseline_steps
    train_linearized(lin, rule, 1, outputs_at=[1])  # warm-up (torch.func, allocator)
    before, reference = _baseline(lin, rule, few)
    check = lin.predict(rule, few, outputs_at=[few])
    dL = float(np.abs(check.loss - reference.loss).max() / reference.loss[0])
    dF = float(np.abs(check.outputs - reference.outputs).max() / np.abs(reference.outputs).max())
    start = time.perf_counter()
    prediction = lin.predict(rule, steps, outputs_at=10)
    predict_s = time.perf_counter() - start
    after, _ = _baseline(lin, rule, few)
    per_step = min(before, after)  # the faster of the rounds around the prediction
    ratio = per_step * steps / predict_s
    print(
        f"[{lin.loss.name}] {rule.spec}, {steps} steps: predict {predict_s:.1f} s "
        f"({predict_s / steps * 1e3:.2f} ms/step), loss {prediction.loss[0]:.4g} -> "
        f"{prediction.loss[-1]:.4g}\n"
        f"  linearised training: {before * 1e3:.0f} and {after * 1e3:.0f} ms/step over {few} "
        f"steps before and after; the faster, extrapolated to {steps} steps: "
        f"{per_step * steps:.0f} s\n"
        f"  agreement over the first {few} steps: max|dL|/L0 {dL:.1e}, outputs {dF:.1e}\n"
        f"  ratio: {_verdict(ratio, TARGET_TRAIN) if judged else f'{ratio:.1f}x (info)'}"
    )
    return ratio >= TARGET_TRAIN


# ------------------------------------------------------------------------------- part "nt"


def _nt_problem(n: int, n_test: int, d: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    G = two_layer_gram(X)
    y = np.sign(rng.standard_normal((n, 1)))
    return G[:n, :n].copy(), G[n:, :n].copy(), y


def _run_nt(python: str, cases: dict[str, dict], threads: int) -> dict[str, np.ndarray]:
    arrays: dict[str, object] = {"cases": np.array(list(cases))}
    for name, case in cases.items():
        arrays.update({f"{name}.{k}": np.asarray(v) for k, v in case.items()})
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "in.npz"), Path(tmp, "out.npz")
        np.savez(source, **arrays)
        done = subprocess.run(
            [python, str(NT_REFERENCE), str(source), str(target)],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nt_reference.py failed:\n{done.stderr[-3000:]}")
        with np.load(target) as data:
            return {key: data[key] for key in data.files}


def _change_error(ours: np.ndarray, theirs: np.ndarray, start: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs - start).max())


def _nt_part(args) -> bool:
    python = os.environ.get("NTKDYN_NT_PYTHON")
    if not python:
        print("[nt] skipped: NTKDYN_NT_PYTHON (the neural-tangents interpreter) is not set")
        return True
    n, n_test = 2000, 200
    K, K_test, y = _nt_problem(n, n_test)
    F0, F0_test = np.zeros((n, 1)), np.zeros((n_test, 1))
    lin = Linearized.from_kernels(
        K, F0, y, loss="half-sum", kernel_test=K_test, initial_test_outputs=F0_test
    )
    rule = HeavyBall(1.0 / _lambda_max(K), beta=0.9)
    horizons = [int(s) for s in args.hb_steps.split(",")]
    at = {s: output_steps(199, s) for s in horizons}  # 200 output steps 0..s
    cases = {
        f"hb{s}": {
            "method": "ode",
            "loss": "half-sum",
            "structure": "trace",
            "K": K,
            "K_test": K_test,
            "F0": F0,
            "F0_test": F0_test,
            "y": y,
            "t": at[s].astype(np.float64),
            "lr": rule.lr,
            "momentum": rule.beta,
            "repeats": 1,
        }
        for s in horizons
    }
    nt = _run_nt(python, cases, args.threads)
    lin.predict(rule, 3, outputs_at=1)  # warm-up: imports
    start = time.perf_counter()
    lin.kernel.eigenbasis()
    print(
        f"[nt] HB {rule.spec}, n={n} (+{n_test} test rows), 200 output times, half-sum; "
        f"info: one eigendecomposition {time.perf_counter() - start:.2f} s"
    )
    ok = True
    for s in horizons:
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            prediction = lin.predict(rule, s, outputs_at=at[s])
            seconds.append(time.perf_counter() - start)
        ours, theirs = min(seconds), float(nt[f"hb{s}.seconds"].min())
        ratio = theirs / ours
        gap = _change_error(prediction.outputs, nt[f"hb{s}.train"], F0)
        print(
            f"  {s} steps: ntkdyn predict (exact discrete) {ours:.2f} s, neural-tangents "
            f"momentum ODE {theirs:.2f} s (calls: "
            f"{', '.join(f'{t:.2f}' for t in nt[f'hb{s}.seconds'])} s): "
            f"{_verdict(ratio, TARGET_NT)}; ODE vs discrete outputs differ by {gap:.1e} "
            "of the change"
        )
        ok &= ratio >= TARGET_NT
    s = horizons[len(horizons) // 2]
    spec = rule.ode()
    assert spec is not None
    start = time.perf_counter()
    ode = lin.ode(rule, spec.times(rule.lr, at[s]))
    ode_s = time.perf_counter() - start
    assert ode.test_outputs is not None
    print(
        f"  info, {s} steps: ntkdyn Linearized.ode (the same ODE, DOP853) {ode_s:.2f} s, "
        f"neural-tangents / ntkdyn ODE = {float(nt[f'hb{s}.seconds'].min()) / ode_s:.2f}x; "
        f"agreement train {_change_error(ode.outputs, nt[f'hb{s}.train'], F0):.1e}, test "
        f"{_change_error(ode.test_outputs, nt[f'hb{s}.test'], F0_test):.1e} of the change"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "train", "nt"), default="all")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--baseline-steps", type=int, default=5)
    parser.add_argument("--hb-steps", default="300,1000,3000")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}; {cpu_model()}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}; {args.threads} thread(s) per side; ntkdyn "
        f"{ntkdyn.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    torch.set_num_threads(args.threads)
    ok = True
    with threadpool_limits(args.threads):  # every BLAS loaded by now (the imports above)
        pools = sorted({f"{i['internal_api']} x{i['num_threads']}" for i in threadpool_info()})
        print(f"thread pools: {', '.join(pools)}")
        if args.part in ("all", "nt"):
            ok &= _nt_part(args)
        if args.part in ("all", "train"):
            ok &= _train_part(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

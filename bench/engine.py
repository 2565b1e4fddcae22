"""Benchmark of the training engine (docs/design.md Performance 1-2, 5). Prints one line per
measurement and exits non-zero if a target ratio is missed.

CPU part (always): the E2-shaped sweep at small scale: 39 notebook-parameterised two-layer
networks (widths 200, 250, ..., 800 x HB beta in {0, 0.6, 0.9}), n = 60 rows of 784 features
uniform in [0, 1], labels 0-9, MSELoss, lr 5e-5, 200 steps, float32.

  * engine (``ntkdyn.training.train(..., diagnostics=False)``, all 39 networks in one call;
    the Gram diagnostics at the first and last step are timed on their own line) vs the
    notebook-style loop (``nn.Sequential`` + autograd + ``torch.optim.SGD(momentum=beta)``, one
    run after another): target >= 5x;
  * engine vs the two bare matrix products of the plain formulation over the total width
    (``X W^T`` and ``G^T X``, preallocated outputs, the same number of steps): target <= 1.0x
    (possible because n = 60 < d = 784: the engine runs in the input-space reparametrisation).

CUDA part (``--device cuda``, or automatically when CUDA is available): the full E2 sweep,
n = 600, widths 2000..8000 step 500 x 3 betas (39 networks, total width 195,000), TF32 off:
engine vs loop >= 5x (float32), engine <= 1.0x the bare products (float32), engine float64 within
1.5x of float32.

Timing: one warm-up run, then the best of ``--repeats`` runs; ``torch.cuda.synchronize`` around
every timed region on the GPU.

Usage: ``python bench/engine.py [--device auto|cpu|cuda] [--repeats R] [--skip-cpu]``
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

import torch
from _common import best_time
from torch import nn

from ntkdyn.models import TwoLayerReLU
from ntkdyn.optim import GD, HeavyBall
from ntkdyn.training import train

BETAS = (0.0, 0.6, 0.9)
LR = 5e-5
STEPS = 200
D = 784
TARGET_LOOP = 5.0  # engine at least this many times faster than the notebook-style loop
TARGET_GEMM = 1.0  # engine at most this multiple of the bare GEMMs
TARGET_F64 = 1.5  # float64 engine at most this multiple of float32
LOSS_AGREEMENT = 1e-4  # engine vs loop, max |dL_final| / L0 (float32, same initial weights)


def _problem(n, widths, dtype, device):
    g = torch.Generator().manual_seed(218)
    X = torch.rand(n, D, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    y = torch.randint(0, 10, (n,), generator=g).to(dtype=dtype, device=device)
    models, rules = [], []
    for beta in BETAS:
        for m in widths:
            models.append(
                TwoLayerReLU(D, m, parameterization="notebook", generator=g, dtype=dtype).to(device)
            )
            rules.append(GD(LR) if beta == 0 else HeavyBall(LR, beta=beta))
    return X, y, models, rules


def _engine(X, y, models, rules, **kw):
    kw.setdefault("diagnostics", False)  # the step is timed; checkpoints are timed separately
    return lambda: train(models, X, y, rules, STEPS, loss="mse", **kw)


def _notebook_loop(X, y, models, rules):
    """The authors' style: one nn.Sequential + torch.optim.SGD per network, run one by one."""
    nets = []
    for model in models:
        first = nn.Linear(D, model.width, dtype=X.dtype, device=X.device)
        second = nn.Linear(model.width, 1, bias=False, dtype=X.dtype, device=X.device)
        with torch.no_grad():
            first.weight.copy_(model.W)
            first.bias.copy_(model.bias)
            second.weight.copy_(model.a.unsqueeze(0))
        nets.append(nn.Sequential(first, nn.ReLU(), second))

    def run():
        finals = []
        for net, rule in zip(nets, rules, strict=True):
            state = {k: v.clone() for k, v in net.state_dict().items()}
            beta = getattr(rule, "beta", 0.0)
            opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=beta)
            loss_fn = nn.MSELoss()
            for _ in range(STEPS):
                opt.zero_grad()
                loss = loss_fn(net(X).squeeze(1), y)  # (n,) vs (n,): no broadcasting pitfall
                loss.backward()
                opt.step()
            finals.append(loss_fn(net(X).squeeze(1), y).item())
            net.load_state_dict(state)  # restore for the next repeat
        return finals

    return run


def _bare_gemms(X, total_width):
    """``P = X W^T`` and ``grad_W = G^T X`` over the total width, STEPS times, outputs reused."""
    n = X.shape[0]
    g = torch.Generator(device=X.device).manual_seed(0)
    W = torch.randn(total_width, D, generator=g, dtype=X.dtype, device=X.device)
    Gm = torch.randn(n, total_width, generator=g, dtype=X.dtype, device=X.device)
    P = torch.empty(n, total_width, dtype=X.dtype, device=X.device)
    grad = torch.empty(total_width, D, dtype=X.dtype, device=X.device)

    def run():
        for _ in range(STEPS):
            torch.mm(X, W.T, out=P)
            torch.mm(Gm.T, X, out=grad)

    return run


def _line(name, seconds):
    print(f"{name:<58s} {seconds:9.3f} s  ({seconds / STEPS * 1e3:8.3f} ms/step)", flush=True)


def _ratio(name, value, target, *, at_least):
    ok = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    print(
        f"{name:<58s} {value:9.2f} x  (target {sign} {target:g}): {'PASS' if ok else 'FAIL'}",
        flush=True,
    )
    return ok


def _check_losses(engine_results, loop_finals):
    """Same initial weights, same rules: final losses agree to float32 rounding, relative to
    the initial loss (the metric of tests/test_engine_plain_loop.py)."""
    worst = max(
        abs(r.losses[-1] - f) / r.losses[0]
        for r, f in zip(engine_results, loop_finals, strict=True)
    )
    ok = worst <= LOSS_AGREEMENT
    print(
        f"{'final loss, engine vs loop: max |dL| / L0':<58s} {worst:9.2e}    "
        f"(<= {LOSS_AGREEMENT:g}): {'PASS' if ok else 'FAIL'}",
        flush=True,
    )
    return ok


def _sweep(label, n, widths, device, repeats, with_f64):
    X, y, models, rules = _problem(n, widths, torch.float32, device)
    M = sum(m.width for m in models)
    print(
        f"--- {label}: {len(models)} networks, total width {M}, n={n}, d={D}, {STEPS} steps, "
        f"float32, TF32 off, device {device}",
        flush=True,
    )
    ok = True
    t_engine, res = best_time(_engine(X, y, models, rules), device, repeats)
    _line("engine (reparametrised, all networks in one call)", t_engine)
    t_diag, _ = best_time(_engine(X, y, models, rules, diagnostics=True), device, 1)
    _line("engine with diagnostics at the first and last step (info)", t_diag)
    t_plain, _ = best_time(_engine(X, y, models, rules, reparametrize=False), device, 1)
    _line("engine without reparametrisation (info)", t_plain)
    # The loop is long; on the CPU (nothing to warm up but BLAS) one timed run is enough.
    cuda = device.type == "cuda"
    t_loop, finals = best_time(
        _notebook_loop(X, y, models, rules), device, max(1, repeats - 1) if cuda else 1, warmup=cuda
    )
    _line("notebook-style loop (nn.Sequential + SGD, one by one)", t_loop)
    t_gemm, _ = best_time(_bare_gemms(X, M), device, repeats)
    _line("bare GEMMs X W^T and G^T X over the total width", t_gemm)
    ok &= _check_losses(res, finals)
    ok &= _ratio(
        "speed-up engine vs notebook-style loop", t_loop / t_engine, TARGET_LOOP, at_least=True
    )
    ok &= _ratio("engine time / bare GEMM time", t_engine / t_gemm, TARGET_GEMM, at_least=False)
    if with_f64:
        X64, y64, models64, rules64 = _problem(n, widths, torch.float64, device)
        t64, _ = best_time(_engine(X64, y64, models64, rules64), device, repeats)
        _line("engine float64", t64)
        ok &= _ratio("engine float64 / float32", t64 / t_engine, TARGET_F64, at_least=False)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cpu", action="store_true", help="run the CUDA part only")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda given but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    print(
        f"date {datetime.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; "
        f"python {platform.python_version()}; {platform.machine()} with {os.cpu_count()} CPUs; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    ok = True
    try:
        if not args.skip_cpu and args.device in ("auto", "cpu"):
            ok &= _sweep(
                "CPU, E2 at small scale",
                60,
                list(range(200, 801, 50)),
                torch.device("cpu"),
                args.repeats,
                with_f64=False,
            )
        if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
            dev = torch.device("cuda")
            print(f"GPU {torch.cuda.get_device_name(dev)}", flush=True)
            ok &= _sweep(
                "CUDA, full E2", 600, list(range(2000, 8001, 500)), dev, args.repeats, with_f64=True
            )
    except Exception as exc:  # noqa: BLE001 (a crash must read as a failure, with the reason)
        print(f"error: benchmark crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print("error: at least one target was missed (lines marked FAIL)", file=sys.stderr)
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

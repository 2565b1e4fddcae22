"""Benchmark of ``empirical_ntk`` against the bare GEMM ``J J^T`` it stands for. Prints one line
per measurement and exits non-zero if the target ratio is missed.

Model: the 3-layer MLP ``d -> width -> width -> C`` with biases and ReLUs (default 64 -> 1024 ->
1024 -> 1, 1,116,161 parameters), float64, ``n`` random Gaussian rows (default 1000).

  * ``empirical_ntk(mlp, X)`` (``method="auto"``: the layer-wise closed form of
    docs/mathematics.md §1.6) against the bare product ``A A^T`` of a random float64
    ``(n C) x #params`` matrix ``A``, the Gram of a Jacobian of that size: target <= 1.5x. The
    product is accumulated over column panels ``A_k A_k^T`` of at most 512 MiB (the same flops,
    NumPy's ``a @ a.T``, which calls BLAS ``syrk``), so the baseline needs no 9 GB array;
    drawing the panels is not timed.
  * info: the same kernel by ``method="autodiff"`` (per-row Jacobians planned within the
    default 512 MiB budget) and by the tiling of earlier versions (``block_rows`` = two
    all-tensor blocks within the budget), unless ``--skip-autodiff``; their agreement with the
    layer-wise kernel is printed (max |dK| / max |K|).

Timing: one warm-up call, then the best of ``--repeats`` calls for the layer-wise kernel; the
long measurements run once.

Usage: ``python bench/ntk.py [--quick] [--n N] [--width W] [--outputs C] [--repeats R]
[--threads T] [--skip-autodiff] [--skip-old] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
import torch
from _common import best_time, cpu_model, sync
from threadpoolctl import threadpool_limits
from torch import nn

from ntkdyn.kernels import JACOBIAN_BUDGET_BYTES, empirical_ntk

TARGET = 1.5  # empirical_ntk at most this multiple of the bare GEMM
PANEL_BYTES = 512 * 2**20  # column panel of the baseline's A


def _mlp(d: int, width: int, outputs: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, outputs)).double().to(device)


def _bare_gram(rows: int, columns: int, device: torch.device) -> float:
    """Seconds for ``A A^T`` of a random ``rows x columns`` float64 ``A``, by column panels."""
    panel = max(1, PANEL_BYTES // (8 * rows))
    g = torch.Generator(device=device).manual_seed(1)
    K = torch.zeros(rows, rows, dtype=torch.float64, device=device)
    total = 0.0
    for start in range(0, columns, panel):
        width = min(panel, columns - start)
        A = torch.randn(rows, width, generator=g, dtype=torch.float64, device=device)
        sync(device)
        t0 = time.perf_counter()
        if device.type == "cpu":
            a = A.numpy()
            K += torch.from_numpy(a @ a.T)  # syrk
        else:
            K.addmm_(A, A.T)
        sync(device)
        total += time.perf_counter() - t0
    return total


def _line(name: str, seconds: float) -> None:
    print(f"{name:<62s} {seconds:9.3f} s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 300, width 256")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--outputs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS threads")
    parser.add_argument("--skip-autodiff", action="store_true", help="skip both autodiff runs")
    parser.add_argument("--skip-old", action="store_true", help="skip the old tiling only")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    n = args.n or (300 if args.quick else 1000)
    width = args.width or (256 if args.quick else 1024)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda given but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        return _bench(args, n, width, torch.device(args.device))


def _bench(args, n: int, width: int, device: torch.device) -> int:
    print(
        f"date {datetime.datetime.now().isoformat(timespec='seconds')}; torch {torch.__version__}; "
        f"numpy {np.__version__}; python {platform.python_version()}; {cpu_model()}, "
        f"{os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}; device {device}",
        flush=True,
    )
    model = _mlp(args.d, width, args.outputs, device)
    params = sum(p.numel() for p in model.parameters())
    X = np.random.default_rng(2).standard_normal((n, args.d))
    C = args.outputs
    print(
        f"--- MLP {args.d} -> {width} -> {width} -> {C}, {params:,} parameters, n={n}, "
        f"float64; kernel {n * C} x {n * C}",
        flush=True,
    )
    t_ntk, K = best_time(lambda: empirical_ntk(model, X), device, args.repeats, warmup=True)
    _line("empirical_ntk (auto: layer-wise closed form)", t_ntk)
    time.sleep(1.0)  # let torch's OpenMP threads stop spinning before NumPy's BLAS runs
    t_gemm = _bare_gram(n * C, params, device)
    _line(f"bare GEMM A A^T, A random {n * C} x {params:,} float64", t_gemm)
    ratio = t_ntk / t_gemm
    ok = ratio <= TARGET
    print(
        f"{'empirical_ntk / bare GEMM':<62s} {ratio:9.3f} x  (target <= {TARGET:g}): "
        f"{'PASS' if ok else 'FAIL'}",
        flush=True,
    )
    if not args.skip_autodiff:
        t_ad, K_ad = best_time(
            lambda: empirical_ntk(model, X, method="autodiff"), device, 1, warmup=False
        )
        _line("info: method='autodiff' (planned groups and tiles)", t_ad)
        _agreement(K_ad, K)
        if not args.skip_old:
            row_bytes = C * params * 8
            old_rows = max(1, JACOBIAN_BUDGET_BYTES // (2 * row_bytes))
            t_old, K_old = best_time(
                lambda: empirical_ntk(model, X, method="autodiff", block_rows=old_rows),
                device,
                1,
                warmup=False,
            )
            _line(f"info: old autodiff tiling (all tensors, block_rows={old_rows})", t_old)
            _agreement(K_old, K)
            print(
                f"{'info: old autodiff / empirical_ntk':<62s} {t_old / t_ntk:9.1f} x; "
                f"old autodiff / bare GEMM {t_old / t_gemm:.2f} x",
                flush=True,
            )
    if not ok:
        print("error: the target was missed (line marked FAIL)", file=sys.stderr)
        return 1
    print("all targets met")
    return 0


def _agreement(K: np.ndarray, reference: np.ndarray) -> None:
    gap = float(np.max(np.abs(K - reference)) / np.max(np.abs(reference)))
    print(f"{'  agreement with the layer-wise kernel, max |dK| / max |K|':<62s} {gap:9.1e}")


if __name__ == "__main__":
    sys.exit(main())

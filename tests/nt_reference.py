"""neural-tangents' function-space predictions for ntkdyn's agreement tests and benchmark.

Run with the interpreter of an environment that has ``neural_tangents`` and ``jax`` (not
ntkdyn's): ``$NTKDYN_NT_PYTHON tests/nt_reference.py IN.npz OUT.npz``. It imports neither
ntkdyn nor torch, so it runs in an environment that has neither.

``IN.npz`` holds ``cases`` (names) and, for each case ``name``, arrays ``name.FIELD``:

* ``method``: ``"mse"`` (``predict.gradient_descent_mse``, the closed form) or ``"ode"``
  (``predict.gradient_descent``, jax's Dormand-Prince ``odeint``);
* ``loss`` (ode only): ``"half-sum"``, ``"mse"`` or ``"cross-entropy"``, written below with the
  same normalisation as ``ntkdyn.losses.Loss``;
* ``K``: the kernel in ntkdyn's layout (``structure`` ``"full"``: ``(n C, n C)`` in row-major
  order ``i C + c``; ``"trace"``: ``(n, n)``, the same kernel for every output);
* ``K_test``: the cross kernel ``(n_test C, n C)`` or ``(n_test, n)``;
* ``F0``, ``F0_test``, ``y``: initial outputs and targets, ``(rows, C)``;
* ``t``: neural-tangents' times (its "steps"), ``lr``, ``momentum`` (NaN: none);
* ``repeats`` (optional): extra timed calls, for the benchmark.

``OUT.npz`` holds ``name.train`` and ``name.test`` (``(len(t), rows, C)``) and
``name.seconds``: the wall time of each call (the first includes the factorisation or the
compilation, which neural-tangents caches or redoes per call).
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _nt_kernel(K: np.ndarray, rows: int, n: int, C: int, structure: str) -> np.ndarray:
    """ntkdyn's ``(rows C, n C)`` into neural-tangents' ``(rows, n, C, C)`` (axes of the
    first argument even, of the second odd); a trace kernel is passed as it is."""
    if structure == "trace":
        return K
    return K.reshape(rows, C, n, C).transpose(0, 2, 1, 3)


def _loss(name: str):
    import jax.numpy as jnp
    from jax.nn import log_softmax

    if name == "half-sum":
        return lambda f, y: 0.5 * jnp.sum((f - y) ** 2)
    if name == "mse":
        return lambda f, y: jnp.mean((f - y) ** 2)
    if name == "cross-entropy":
        return lambda f, y: -jnp.sum(y * log_softmax(f, axis=-1)) / f.shape[0]
    raise ValueError(f"unknown loss {name!r}")


def run_case(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import jax.numpy as jnp
    from neural_tangents import predict

    structure = str(case["structure"])
    F0, F0_test, y = case["F0"], case["F0_test"], case["y"]
    (n, C), rows = F0.shape, F0_test.shape[0]
    K = jnp.asarray(_nt_kernel(case["K"], n, n, C, structure))
    K_test = jnp.asarray(_nt_kernel(case["K_test"], rows, n, C, structure))
    axes = (-1,) if structure == "trace" else ()
    lr = float(case["lr"])
    momentum = float(case["momentum"])
    t = jnp.asarray(case["t"])
    seconds = []
    for _ in range(1 + int(case.get("repeats", 0))):
        start = time.perf_counter()
        if str(case["method"]) == "mse":
            fn = predict.gradient_descent_mse(K, jnp.asarray(y), lr, diag_reg=0.0, trace_axes=axes)
        else:
            fn = predict.gradient_descent(
                _loss(str(case["loss"])),
                K,
                jnp.asarray(y),
                lr,
                None if np.isnan(momentum) else momentum,
                trace_axes=axes,
            )
        train, test = fn(t, jnp.asarray(F0), jnp.asarray(F0_test), K_test)
        train, test = np.asarray(train.block_until_ready()), np.asarray(test)
        seconds.append(time.perf_counter() - start)
    return {"train": train, "test": test, "seconds": np.array(seconds)}


def main(argv: list[str]) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    source, target = argv
    results = {}
    with np.load(source) as data:
        for name in data["cases"]:
            prefix = f"{name}."
            case = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
            for key, value in run_case(case).items():
                results[f"{name}.{key}"] = value
    np.savez(target, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

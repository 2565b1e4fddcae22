"""What ``ntkdyn kernel`` reports about a data set's NTK: one typed record.

:func:`kernel_summary` computes the analytic Gram (``H^inf`` of the two-layer network, or the
deep ReLU NTK), its spectrum, optionally the empirical Gram of a network at initialisation,
the largest stable learning rate of every optimizer on the effective kernel ``K = c H``
(docs/mathematics.md §0, 3), the optimal GD/HB parameters and, on request, the crossover step
of scheduled Nesterov (docs/mathematics.md §4). :meth:`KernelSummary.to_dict` is the JSON of
``ntkdyn kernel --json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .conventions import loss_factor

if TYPE_CHECKING:
    from .data import Dataset
    from .dynamics.stability import OptimalParameters, StabilityRow

__all__ = [
    "EmpiricalGram",
    "KernelSummary",
    "NesterovCrossover",
    "kernel_summary",
]


@dataclass(frozen=True)
class EmpiricalGram:
    """The Gram ``H(0)`` of a network of ``width`` drawn with ``seed``, against ``H``."""

    width: int
    seed: int
    lambda_min: float
    lambda_max: float
    distance_fro: float  # ||H(0) - H||_F
    distance_2: float  # ||H(0) - H||_2


@dataclass(frozen=True)
class NesterovCrossover:
    """Scheduled Nesterov at ``lr``, damping ``r``, ``h0 = lr * lambda_min(K)``: linear after
    ``step``, at ``L/L0 ~ loss_rel`` (docs/mathematics.md §4)."""

    lr: float
    r: float
    h0: float
    step: float | None
    loss_rel: float | None


@dataclass(frozen=True)
class KernelSummary:
    """The analytic Gram of a data set, its spectrum, and what it implies for the optimizers.

    ``kernel`` names the Gram; ``loss_factor`` is ``c`` of ``K = c H``; ``stability`` holds
    every optimizer family's largest stable step and ``optimal`` the optimal GD/HB parameters,
    both on ``K``; ``empirical`` and ``nesterov_crossover`` are None unless asked for.
    """

    data: str
    n: int
    d: int
    kernel: str
    lambda_min: float
    lambda_max: float
    condition: float
    loss: str
    loss_factor: float
    empirical: EmpiricalGram | None
    stability: tuple[StabilityRow, ...]
    optimal: OptimalParameters
    nesterov_crossover: NesterovCrossover | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload of ``ntkdyn kernel --json`` (absent parts left out)."""
        out: dict[str, Any] = {
            "data": self.data,
            "n": self.n,
            "d": self.d,
            "kernel": self.kernel,
            "lambda_min": self.lambda_min,
            "lambda_max": self.lambda_max,
            "condition": self.condition,
            "loss": self.loss,
            "loss_factor": self.loss_factor,
        }
        if self.empirical is not None:
            out["empirical"] = asdict(self.empirical)
        out["stability"] = [
            {
                "optimizer": row.label,
                "max_stable_lr": row.max_stable_lr,
                "max_stable_h": row.max_stable_h,
                "bound": row.bound,
            }
            for row in self.stability
        ]
        from .optim import GD, HeavyBall  # the keys are the rules' own names

        o = self.optimal
        out["optimal"] = {
            GD.name: {"lr": o.gd_lr, "rate": o.gd_rate},
            HeavyBall.name: {"lr": o.hb_lr, "beta": o.hb_beta, "rate": o.hb_rate},
        }
        if self.nesterov_crossover is not None:
            out["nesterov_crossover"] = asdict(self.nesterov_crossover)
        return out


def kernel_summary(
    data: Dataset,
    *,
    depth: int | None = None,
    width: int | None = None,
    seed: int = 0,
    loss: str = "half-sum",
    nesterov_lr: float | None = None,
    nesterov_r: float = 3.0,
) -> KernelSummary:
    """Summarise the NTK of ``data`` (module docstring).

    Args:
        data: the data set.
        depth: None for ``H^inf`` of the two-layer network (first layer trained); else the
            deep ReLU NTK with ``depth`` hidden layers.
        width: also the empirical Gram at initialisation of a network of this width
            (:func:`ntkdyn.models.seeded_network` with ``seed``).
        loss: ``"half-sum"`` or ``"mse"``: the loss factor ``c`` of ``K = c H``.
        nesterov_lr, nesterov_r: also the crossover of scheduled Nesterov (torch's scheme)
            at this lr and damping.
    """
    import numpy as np

    from .dynamics.stability import optimal_parameters, stability, stability_table
    from .kernels import deep_relu_ntk, spectrum, two_layer_gram
    from .optim import NesterovTorch

    if depth is None:
        H = two_layer_gram(data.X, layer="first")
        what = "H^inf (two-layer, first layer trained)"
    else:
        H = deep_relu_ntk(data.X, depth)
        what = f"deep ReLU NTK (depth {depth})"
    spec = spectrum(H)
    c = loss_factor(loss, data.n)
    empirical = None
    if width is not None:
        from .kernels import empirical_ntk
        from .models import seeded_network

        H0 = empirical_ntk(seeded_network(data.d, width, depth=depth, seed=seed), data.X)
        s0 = spectrum(H0)
        empirical = EmpiricalGram(
            width=width,
            seed=seed,
            lambda_min=s0.lambda_min,
            lambda_max=s0.lambda_max,
            distance_fro=float(np.linalg.norm(H0 - H)),
            distance_2=float(np.linalg.norm(H0 - H, 2)),
        )
    K_eigs = c * spec.eigenvalues
    crossover = None
    if nesterov_lr is not None:
        nag = stability(K_eigs, NesterovTorch(nesterov_lr, r=nesterov_r))
        crossover = NesterovCrossover(
            nesterov_lr, nesterov_r, nag.h_min, nag.crossover_step, nag.crossover_loss
        )
    return KernelSummary(
        data=data.name,
        n=data.n,
        d=data.d,
        kernel=what,
        lambda_min=spec.lambda_min,
        lambda_max=spec.lambda_max,
        condition=spec.condition,
        loss=loss,
        loss_factor=c,
        empirical=empirical,
        stability=stability_table(K_eigs),
        optimal=optimal_parameters(K_eigs),
        nesterov_crossover=crossover,
    )

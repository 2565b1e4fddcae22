"""ntkdyn: predict, simulate and verify how optimizers train wide neural networks.

The public API, one obvious spelling each (README.md has a tour):

- data: ``load_dataset``, ``Dataset``, ``validate_dataset``
- models: ``TwoLayerReLU`` (parameterisation "theory" | "notebook"), ``DeepReLU``
- kernels: ``ntk_gram`` (analytic), ``two_layer_gram``, ``deep_relu_ntk``, ``empirical_ntk``,
  ``spectrum``
- optimizers (data, with an exact ``.torch(params)`` view): ``GD``, ``HeavyBall``,
  ``Nesterov`` (textbook, vanishing damping r), ``NesterovTorch`` (torch's scheme),
  ``NesterovSC`` (constant momentum), ``HigherOrderMomentum``, ``HigherOrderMomentumNotebook``,
  ``Adam``, ``RMSprop`` (adaptive: trained, never predicted); ``parse("hb:lr=0.1,beta=0.9")``
- before training: ``advise`` (an ``Advice``: per optimizer family the fastest stable
  hyperparameters to a target loss, predicted steps, expected error, ranked) and
  ``verify_advice`` (a ``Verification``: the advice trained, predicted against measured)
- theory (kernel first, then the rule): ``predict_discrete``, ``discrete_modes``,
  ``predict_ode``, ``stability``, ``optimal_parameters``, ``predicted_rate``, ``fit_rate``
- any model, any smooth loss: ``linearize`` (a :class:`Linearized` model that predicts the
  loss and the train and test outputs of every linear rule), ``Loss``; when the kernel model
  stops holding: ``Linearized.validity`` (a ``ValidityRecord``), ``KernelRegimeWarning``;
  Adam's late phase as heavy ball on a preconditioned kernel: ``adam_late_phase``
- training: ``train`` (many networks at once)
- experiments: ``load_config``, ``expand_runs``, ``run_sweep``, ``Store``; results as data:
  ``open_results`` (``.runs``, ``.curves`` as pandas DataFrames), ``read_results_csv``

Names are imported on first use (PEP 562), so that ``import ntkdyn`` and the ``ntkdyn``
command's ``--help`` and ``--version`` do not pay for torch, scipy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

#: public name -> the submodule that defines it
_LAZY = {
    "LatePhase": "adaptive",
    "adam_late_phase": "adaptive",
    "Advice": "advisor",
    "advise": "advisor",
    "Verification": "_advise_verify",
    "verify_advice": "_advise_verify",
    "Dataset": "data",
    "DegenerateDataWarning": "data",
    "load_dataset": "data",
    "validate_dataset": "data",
    "discrete_modes": "dynamics",
    "optimal_parameters": "dynamics",
    "predict_discrete": "dynamics",
    "predict_ode": "dynamics",
    "stability": "dynamics",
    "stability_table": "dynamics",
    "Results": "experiments",
    "Store": "experiments",
    "open_results": "experiments",
    "read_results_csv": "experiments",
    "expand_runs": "experiments",
    "load_config": "experiments",
    "run_sweep": "experiments",
    "IllConditionedKernelWarning": "kernels",
    "Spectrum": "kernels",
    "deep_relu_ntk": "kernels",
    "empirical_ntk": "kernels",
    "ntk_gram": "kernels",
    "spectrum": "kernels",
    "two_layer_gram": "kernels",
    "Linearized": "linearized",
    "linearize": "linearized",
    "Loss": "losses",
    "DeepReLU": "models",
    "TwoLayerReLU": "models",
    "GD": "optim",
    "Adam": "optim",
    "HeavyBall": "optim",
    "HigherOrderMomentum": "optim",
    "HigherOrderMomentumNotebook": "optim",
    "Nesterov": "optim",
    "NesterovSC": "optim",
    "NesterovTorch": "optim",
    "RMSprop": "optim",
    "Rule": "optim",
    "parse": "optim",
    "fit_rate": "rates",
    "predicted_rate": "rates",
    "Diagnostics": "training",
    "RunResult": "training",
    "train": "training",
    "KernelRegimeWarning": "validity",
    "ValidityRecord": "validity",
}

if TYPE_CHECKING:
    from ._advise_verify import Verification, verify_advice
    from .adaptive import LatePhase, adam_late_phase
    from .advisor import Advice, advise
    from .data import Dataset, DegenerateDataWarning, load_dataset, validate_dataset
    from .dynamics import (
        discrete_modes,
        optimal_parameters,
        predict_discrete,
        predict_ode,
        stability_table,
    )
    from .dynamics.stability import stability
    from .experiments import (
        Results,
        Store,
        expand_runs,
        load_config,
        open_results,
        read_results_csv,
        run_sweep,
    )
    from .kernels import (
        IllConditionedKernelWarning,
        Spectrum,
        deep_relu_ntk,
        empirical_ntk,
        ntk_gram,
        spectrum,
        two_layer_gram,
    )
    from .linearized import Linearized, linearize
    from .losses import Loss
    from .models import DeepReLU, TwoLayerReLU
    from .optim import (
        GD,
        Adam,
        HeavyBall,
        HigherOrderMomentum,
        HigherOrderMomentumNotebook,
        Nesterov,
        NesterovSC,
        NesterovTorch,
        RMSprop,
        Rule,
        parse,
    )
    from .rates import fit_rate, predicted_rate
    from .training import Diagnostics, RunResult, train
    from .validity import KernelRegimeWarning, ValidityRecord

__all__ = [
    "GD",
    "Adam",
    "Advice",
    "LatePhase",
    "RMSprop",
    "Verification",
    "adam_late_phase",
    "advise",
    "verify_advice",
    "Dataset",
    "DeepReLU",
    "DegenerateDataWarning",
    "Diagnostics",
    "HeavyBall",
    "HigherOrderMomentum",
    "HigherOrderMomentumNotebook",
    "IllConditionedKernelWarning",
    "KernelRegimeWarning",
    "Linearized",
    "Loss",
    "Nesterov",
    "NesterovSC",
    "NesterovTorch",
    "Rule",
    "Results",
    "RunResult",
    "Spectrum",
    "Store",
    "TwoLayerReLU",
    "ValidityRecord",
    "deep_relu_ntk",
    "discrete_modes",
    "empirical_ntk",
    "expand_runs",
    "fit_rate",
    "linearize",
    "load_config",
    "load_dataset",
    "ntk_gram",
    "open_results",
    "optimal_parameters",
    "parse",
    "predict_discrete",
    "predict_ode",
    "predicted_rate",
    "read_results_csv",
    "run_sweep",
    "spectrum",
    "stability",
    "stability_table",
    "train",
    "two_layer_gram",
    "validate_dataset",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

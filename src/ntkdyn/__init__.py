"""ntkdyn: predict, simulate and verify how optimizers train wide neural networks.

The public API, one obvious spelling each (README.md has a tour):

- data: ``load_dataset``, ``Dataset``, ``validate_dataset``
- models: ``TwoLayerReLU`` (parameterisation "theory" | "notebook"), ``DeepReLU``
- kernels: ``ntk_gram`` (analytic), ``two_layer_gram``, ``deep_relu_ntk``, ``empirical_ntk``,
  ``spectrum``
- optimizers (data, with an exact ``.torch(params)`` view): ``GD``, ``HeavyBall``,
  ``Nesterov`` (textbook, vanishing damping r), ``NesterovTorch`` (torch's scheme),
  ``NesterovSC`` (constant momentum), ``HigherOrderMomentum``, ``HigherOrderMomentumNotebook``,
  ``Adam``; ``parse("hb:lr=0.1,beta=0.9")``
- theory: ``predict_discrete``, ``predict_ode``, ``stability``, ``predicted_rate``, ``fit_rate``
- training: ``train`` (many networks at once)
- experiments: ``load_config``, ``expand_runs``, ``run_sweep``, ``Store``
"""

from .data import Dataset, DegenerateDataWarning, load_dataset, validate_dataset
from .dynamics import predict_discrete, predict_ode, stability, stability_table
from .experiments import Store, expand_runs, load_config, run_sweep
from .kernels import (
    IllConditionedKernelWarning,
    Spectrum,
    deep_relu_ntk,
    empirical_ntk,
    ntk_gram,
    spectrum,
    two_layer_gram,
)
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
    Rule,
    parse,
)
from .rates import fit_rate, predicted_rate
from .training import Diagnostics, RunResult, train

__version__ = "0.1.0"

__all__ = [
    "GD",
    "Adam",
    "Dataset",
    "DeepReLU",
    "DegenerateDataWarning",
    "Diagnostics",
    "HeavyBall",
    "HigherOrderMomentum",
    "HigherOrderMomentumNotebook",
    "IllConditionedKernelWarning",
    "Nesterov",
    "NesterovSC",
    "NesterovTorch",
    "Rule",
    "RunResult",
    "Spectrum",
    "Store",
    "TwoLayerReLU",
    "deep_relu_ntk",
    "empirical_ntk",
    "expand_runs",
    "fit_rate",
    "load_config",
    "load_dataset",
    "ntk_gram",
    "parse",
    "predict_discrete",
    "predict_ode",
    "predicted_rate",
    "run_sweep",
    "spectrum",
    "stability",
    "stability_table",
    "train",
    "two_layer_gram",
    "validate_dataset",
]

"""The data, the network and its kernel model for ``ntkdyn.advisor``.

The network is built the way ``ntkdyn predict`` builds it: a ``module:factory`` through
``ntkdyn._factory`` (seeded call, labels and outputs per loss), a width through
``models.seeded_network``; it is linearised by ``ntkdyn.linearize``. Without a network the
infinite-width kernel (``kernels.ntk_gram``: ``H^inf`` of the two-layer network, the deep NTK
with a depth) with zero initial outputs is wrapped as a ``Linearized`` too, so that every loss
goes through one path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validate import integer

if TYPE_CHECKING:
    from torch import nn

    from ._kernel_operator import Eigenbasis
    from .data import Dataset
    from .linearized import Linearized
    from .prediction import KernelModel

__all__ = ["Built", "build_kernel", "resolve_data"]


@dataclass(frozen=True, eq=False)
class Built:
    """What the search runs on.

    Attributes:
        lin: the linearised model (from ``H^inf`` at infinite width).
        kernel_model: its kernel model for a squared loss (None for the others).
        network: the network at initialisation, or None (infinite width).
        lam: ascending eigenvalues of the effective kernel (for logistic and cross-entropy:
            scaled by the loss's curvature bound, as ``Linearized.effective_eigenvalues``).
        basis: the kernel's eigenbasis for logistic and cross-entropy (the probe's movement
            is measured in it), None for squared losses.
    """

    lin: Linearized
    kernel_model: KernelModel | None
    network: nn.Module | None
    lam: np.ndarray
    basis: Eigenbasis | None = None


def resolve_data(data: object, *, n: int | None, data_seed: int) -> Dataset:
    """``data`` as a Dataset: a Dataset as is, a spec string through ``load_dataset``."""
    from .data import Dataset, load_dataset

    if isinstance(data, Dataset):
        if n is not None:
            raise ValueError("`n` applies to a data spec, not to a Dataset (slice it instead)")
        return data
    if not isinstance(data, str):
        raise ValueError(
            f"`data` must be a Dataset or a data spec such as 'digits:classes=3/8', got "
            f"{type(data).__name__}"
        )
    return load_dataset(data, n=n, seed=integer("data_seed", data_seed, minimum=0))


def _network(
    data: Dataset,
    outputs: int,
    *,
    model: object,
    width: int | None,
    depth: int | None,
    seed: int,
    loss: str,
) -> nn.Module | None:
    import torch

    from ._factory import build_model, output_count
    from .models import seeded_network

    if model is not None and width is not None:
        raise ValueError("`width` does not apply with `model` (its network is the model)")
    if depth is not None:
        depth = integer("depth", depth, minimum=1)
    if model is None and width is None:
        return None
    if width is not None:
        width = integer("width", width, minimum=1)
        if outputs != 1:
            raise ValueError(
                f"`loss` {loss} needs {outputs} outputs per row; a `width` network has one "
                "(give a `model` with that many outputs)"
            )
        return seeded_network(data.d, width, depth=depth, seed=seed)
    if depth is not None:
        raise ValueError("`depth` does not apply with `model` (its network is the model)")
    if isinstance(model, str):
        net = build_model(model, input_dim=data.d, outputs=outputs, seed=seed, field="model")
        spec = model
    elif isinstance(model, torch.nn.Module):
        net, spec = model, type(model).__name__
    else:
        raise ValueError(
            f"`model` must be a torch.nn.Module or a 'module:factory' string, got "
            f"{type(model).__name__}"
        )
    got = output_count(net, np.array(data.X[:2]), spec, field="model")
    if got != outputs:
        raise ValueError(
            f"`model` {spec!r} gives {got} output(s) per row; the {loss} loss on "
            f"{data.name!r} needs {outputs}"
        )
    return net


def build_kernel(
    data: Dataset,
    loss: str,
    *,
    model: Any,
    width: int | None,
    depth: int | None,
    seed: int,
) -> Built:
    """The linearisation (and, for a squared loss, the kernel model) of the network on
    ``data`` (module docstring)."""
    from ._factory import loss_labels
    from .kernels import ntk_gram
    from .linearized import Linearized, linearize

    labels, outputs = loss_labels(loss, data.y, data.name, field="loss")
    net = _network(data, outputs, model=model, width=width, depth=depth, seed=seed, loss=loss)
    if net is None:
        H = ntk_gram(data.X, depth=depth)
        structure = "trace" if outputs > 1 else "full"  # independent outputs at infinite width
        zeros = np.zeros((data.n, outputs))
        lin = Linearized.from_kernels(H, zeros, labels, loss=loss, structure=structure)
    else:
        lin = linearize(net, np.array(data.X), labels, loss=loss)
    basis = None
    if lin.loss.is_squared:
        kernel_model = lin.kernel_model()
        lam = kernel_model.eigenvalues
    else:
        kernel_model = None
        lam = lin.effective_eigenvalues()[0]
        basis = lin.kernel.eigenbasis() if net is not None else None
    if not float(lam[-1]) > 0:
        raise ValueError(f"`data` {data.name!r} gives a zero kernel: there is nothing to train")
    return Built(lin, kernel_model, net, lam, basis)

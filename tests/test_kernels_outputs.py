"""Tests for the multi-output empirical NTK (docs/mathematics.md §1.6): the three structures and
their ordering against a brute-force Jacobian, cross kernels, the layer-wise closed form
against autodiff (MLP, CNN, frozen layers, parameter selections), the models it must refuse or
hand to autodiff, and the memory budget (tiled = untiled; refusals before any computation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from ntkdyn import _ntk_autodiff, _ntk_layers
from ntkdyn._budget import TooLarge
from ntkdyn.kernels import NTK_STRUCTURES, empirical_ntk
from ntkdyn.models import DeepReLU, TwoLayerReLU

from kernel_cases import REORDERED_RTOL, REORDERED_RTOL_FLOAT32, assert_reordered_close

#: Two float64 kernels of one model by different formulas (layer-wise products, per-row
#: Jacobians, a brute-force Jacobian): each entry is the same sum of products taken in another
#: grouping, so they differ by rounding of sums over a few thousand terms (observed <= 5e-16
#: relative to the largest entry); 1e-12 leaves room for other BLAS builds and shapes, and is
#: still ~1e10 times smaller than any missing or doubled term.
EXACT_RTOL = 1e-12
MiB = 2**20

# Small problems: one torch thread per module (the single_thread fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("single_thread")


def _rel_max(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _mlp(d: int = 4, width: int = 16, outputs: int = 3, seed: int = 0) -> nn.Sequential:
    """Depth-3 MLP with biases, float64."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d, width),
        nn.Tanh(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, outputs),
    ).double()


def _cnn(outputs: int = 3, seed: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, outputs),
    ).double()


def _rows(n: int, *shape: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape))


def _brute_force(model: nn.Module, X: np.ndarray, X2: np.ndarray | None = None, params=None):
    """``J(X2) J(X)^T`` from the Jacobian of ``outputs.reshape(-1)`` of whole batches."""
    names = params or [k for k, p in model.named_parameters() if p.requires_grad]
    values = {k: v.detach() for k, v in model.named_parameters() if k in names}

    def jacobian(rows: np.ndarray) -> np.ndarray:
        x = torch.tensor(rows)
        jac = jacrev(lambda p: functional_call(model, p, (x,)).reshape(-1))(values)
        return torch.cat([jac[k].reshape(jac[k].shape[0], -1) for k in names], 1).detach().numpy()

    J = jacobian(X)
    return (J if X2 is None else jacobian(X2)) @ J.T


# --------------------------------------------------------------------------------------------
# Structures, ordering, cross kernels.


@pytest.mark.parametrize("method", ["layerwise", "autodiff"])
@pytest.mark.parametrize("cross", [False, True])
def test_full_kernel_is_the_gram_of_the_flattened_outputs_jacobian(method, cross):
    model, X, X2 = _mlp(), _rows(7, 4), _rows(5, 4, seed=3)
    K = empirical_ntk(model, X, X2 if cross else None, method=method)
    reference = _brute_force(model, X, X2 if cross else None)
    assert K.shape == ((15, 21) if cross else (21, 21))  # (n2 C, n C), C = 3
    assert _rel_max(K, reference) < EXACT_RTOL
    # the check must fail for the other natural ordering (c * n + i): the order is tested
    swapped = reference.reshape(-1, 3, 7, 3).transpose(1, 0, 3, 2).reshape(reference.shape)
    assert _rel_max(K, swapped) > 1e-3


@pytest.mark.parametrize("cross", [False, True])
def test_block_diagonal_and_trace_are_the_diagonal_blocks_and_their_mean(cross):
    model, X, X2 = _mlp(), _rows(6, 4), _rows(4, 4, seed=3)
    second = X2 if cross else None
    full = empirical_ntk(model, X, second).reshape(-1, 3, 6, 3)
    blocks = empirical_ntk(model, X, second, structure="block-diagonal")
    trace = empirical_ntk(model, X, second, structure="trace")
    expected_blocks = np.stack([full[:, c, :, c] for c in range(3)])
    assert blocks.shape == expected_blocks.shape == (3, 4 if cross else 6, 6)
    assert_reordered_close(blocks, expected_blocks)
    assert_reordered_close(trace, expected_blocks.mean(axis=0))
    # cross-output terms exist (so dropping them is a real difference)
    assert np.max(np.abs(full[:, 0, :, 1])) > 1e-3 * np.max(np.abs(full))


@pytest.mark.parametrize("structure", NTK_STRUCTURES)
def test_square_kernels_are_exactly_symmetric(structure):
    K = empirical_ntk(_mlp(), _rows(9, 4), structure=structure)
    np.testing.assert_array_equal(K, np.swapaxes(K, -1, -2))


def test_cross_kernel_of_x_with_itself_is_the_square_kernel():
    model, X = _mlp(), _rows(8, 4)
    assert_reordered_close(empirical_ntk(model, X, X), empirical_ntk(model, X))
    # and a different X2 gives a different kernel
    assert _rel_max(empirical_ntk(model, X, X[::-1]), empirical_ntk(model, X)) > 1e-3


class _Shaped(nn.Module):
    def __init__(self, d: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self.lin = nn.Linear(d, int(np.prod(shape, dtype=int))).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).reshape(x.shape[0], *self.shape)


def test_output_shapes_n_and_n1_are_one_output_and_trailing_axes_are_flattened():
    X = _rows(6, 4)
    flat, column = _Shaped(4, ()), _Shaped(4, (1,))
    column.lin.load_state_dict(flat.lin.state_dict())
    for structure in NTK_STRUCTURES:
        K_flat = empirical_ntk(flat, X, structure=structure)
        K_column = empirical_ntk(column, X, structure=structure)
        assert K_flat.shape == ((1, 6, 6) if structure == "block-diagonal" else (6, 6))
        assert_reordered_close(K_flat, K_column)
    model = _mlp(outputs=1)  # C = 1: the three structures are one kernel
    full = empirical_ntk(model, X)
    assert full.shape == (6, 6)
    assert_reordered_close(empirical_ntk(model, X, structure="trace"), full)
    assert_reordered_close(empirical_ntk(model, X, structure="block-diagonal")[0], full)
    shaped = _Shaped(4, (2, 3))
    K = empirical_ntk(shaped, X)
    assert K.shape == (36, 36)
    assert _rel_max(K, _brute_force(shaped, X)) < EXACT_RTOL


# --------------------------------------------------------------------------------------------
# The layer-wise closed form against autodiff.


@pytest.mark.parametrize("structure", NTK_STRUCTURES)
def test_layerwise_equals_autodiff_for_an_mlp(structure):
    model, X, X2 = _mlp(), _rows(10, 4), _rows(6, 4, seed=3)
    for second in (None, X2):
        layerwise = empirical_ntk(model, X, second, structure=structure, method="layerwise")
        autodiff = empirical_ntk(model, X, second, structure=structure, method="autodiff")
        assert _rel_max(layerwise, autodiff) < EXACT_RTOL
        auto = empirical_ntk(model, X, second, structure=structure)  # picks the layer-wise path
        assert_reordered_close(auto, layerwise)


def test_cnn_kernel_autodiff_and_layerwise_head():
    model, X = _cnn(), _rows(6, 1, 8, 8)
    K = empirical_ntk(model, X)  # convolution parameters: autodiff
    assert K.shape == (18, 18)
    assert _rel_max(K, _brute_force(model, X)) < EXACT_RTOL
    model[0].requires_grad_(False)  # frozen convolution: only the Linear head is trained
    head = empirical_ntk(model, X)
    assert _rel_max(head, empirical_ntk(model, X, method="autodiff")) < EXACT_RTOL
    assert _rel_max(head, _brute_force(model, X)) < EXACT_RTOL
    assert _rel_max(head, K) > 1e-3  # the frozen layer's share is really left out


def test_frozen_layer_and_parameter_selections():
    model, X = _mlp(), _rows(8, 4)
    everything = empirical_ntk(model, X)
    model[0].requires_grad_(False)
    frozen = empirical_ntk(model, X)
    first = empirical_ntk(model, X, params=["0.weight", "0.bias"])
    # the kernel is a sum over tensors: frozen + first layer = all
    assert _rel_max(frozen + first, everything) < EXACT_RTOL
    assert _rel_max(frozen, empirical_ntk(model, X, method="autodiff")) < EXACT_RTOL
    for params in (["2.weight"], ["4.bias"], ["0.bias", "4.weight"]):
        layerwise = empirical_ntk(model, X, params=params, method="layerwise")
        autodiff = empirical_ntk(model, X, params=params, method="autodiff")
        assert _rel_max(layerwise, autodiff) < EXACT_RTOL, params
        assert _rel_max(layerwise, _brute_force(model, X, params=params)) < EXACT_RTOL


def test_params_dict_evaluates_at_the_given_values():
    model, other, X = _mlp(seed=0), _mlp(seed=5), _rows(6, 4)
    values = {k: v.detach() for k, v in other.named_parameters()}
    for method in ("layerwise", "autodiff"):
        at_other = empirical_ntk(model, X, params=values, method=method)
        assert _rel_max(at_other, empirical_ntk(other, X, method=method)) < EXACT_RTOL


def test_float32_mlp_layerwise_equals_autodiff():
    model, X = _mlp().float(), _rows(8, 4)
    layerwise = empirical_ntk(model, X, method="layerwise")
    assert layerwise.dtype == np.float64
    assert_reordered_close(
        layerwise, empirical_ntk(model, X, method="autodiff"), rtol=REORDERED_RTOL_FLOAT32
    )


@pytest.mark.parametrize("model_kind", ["two-layer", "deep"])
def test_package_models_cross_kernel_closed_form_equals_autodiff(model_kind, monkeypatch):
    if model_kind == "two-layer":
        model = TwoLayerReLU(5, 64, parameterization="notebook", generator=torch.Generator())
    else:
        model = DeepReLU(5, 32, 2, generator=torch.Generator().manual_seed(3))
    X, X2 = _rows(8, 5), _rows(5, 5, seed=4)
    closed = empirical_ntk(model, X, X2)
    assert closed.shape == (5, 8)
    calls = []  # "autodiff" must really differentiate, not reuse the closed form
    original = _ntk_autodiff.row_jacobian
    monkeypatch.setattr(
        _ntk_autodiff, "row_jacobian", lambda *a: calls.append(a[2]) or original(*a)
    )
    assert _rel_max(closed, empirical_ntk(model, X, X2, method="autodiff")) < EXACT_RTOL
    assert calls
    blocks = empirical_ntk(model, X, X2, structure="block-diagonal")
    assert blocks.shape == (1, 5, 8)
    assert_reordered_close(blocks[0], closed, rtol=REORDERED_RTOL)


# --------------------------------------------------------------------------------------------
# Models the layer-wise path must not take, and models no path may take.


class _Reused(nn.Module):
    """The same Linear applied twice: its gradient has cross terms between the two calls."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4).double()
        self.head = nn.Linear(4, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


class _Tied(nn.Module):
    """A weight used outside its layer's call too (as in tied embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4).double()
        self.head = nn.Linear(4, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inner(x))
        return self.head(h) + (h @ self.inner.weight)[:, :2]


@pytest.mark.parametrize("model_cls", [_Reused, _Tied])
def test_reused_or_tied_linear_falls_back_to_autodiff(model_cls):
    torch.manual_seed(7)
    model, X = model_cls(), _rows(6, 4)
    auto = empirical_ntk(model, X)
    assert _rel_max(auto, _brute_force(model, X)) < EXACT_RTOL
    with pytest.raises(ValueError, match="`method` 'layerwise' does not apply"):
        empirical_ntk(model, X, method="layerwise")


class _Centered(nn.Module):
    """Subtracts the batch mean: every row's output depends on all rows."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x - x.mean(0))


@pytest.mark.parametrize("method", ["auto", "layerwise", "autodiff"])
def test_models_coupling_rows_are_refused(method):
    X = _rows(6, 4)
    with pytest.raises(ValueError, match="`model` couples its rows"):
        empirical_ntk(_Centered(), X, method=method)
    torch.manual_seed(8)
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).double()
    with pytest.raises(ValueError, match="`model` has BatchNorm1d '1' normalising by batch"):
        empirical_ntk(bn, X, method=method)
    dropout = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    with pytest.raises(ValueError, match="`model` has Dropout '1' in training mode"):
        empirical_ntk(dropout, X, method=method)
    # in eval mode both are per-row maps (running statistics; identity) and are accepted
    bn.eval(), dropout.eval()
    linear = ["0.weight", "0.bias", "3.weight", "3.bias"]  # for "layerwise": not BN's own
    ref = _brute_force(bn, X, params=linear)
    assert _rel_max(empirical_ntk(bn, X, params=linear, method=method), ref) < EXACT_RTOL
    assert empirical_ntk(dropout, X, method=method).shape == (12, 12)


# --------------------------------------------------------------------------------------------
# The memory budget.


def _budget_case():
    """n = 600 rows, C = 10 outputs, an 8 -> 32 -> 32 -> 10 MLP (1,674 parameters)."""
    return _mlp(d=8, width=32, outputs=10, seed=9), _rows(600, 8, seed=10)


def test_kernel_tiled_within_a_budget_equals_the_untiled_kernel(monkeypatch):
    model, X = _budget_case()
    blocks = []
    original = _ntk_autodiff.row_jacobian

    def spy(model, values, names):
        rows = original(model, values, names)
        return lambda x: blocks.append((names, x.shape[0])) or rows(x)

    monkeypatch.setattr(_ntk_autodiff, "row_jacobian", spy)
    kwargs = {"structure": "block-diagonal", "method": "autodiff"}
    tiled = empirical_ntk(model, X, budget_bytes=64 * MiB, **kwargs)
    # the 1024-entry weight's Jacobian over all rows (49 MB) does not fit the 35 MiB left
    # beside the 29 MB kernel: it is tiled over rows, the rest formed once
    assert any(names == ("2.weight",) and rows < 600 for names, rows in blocks), blocks
    blocks.clear()
    untiled = empirical_ntk(model, X, budget_bytes=2**31, **kwargs)
    assert all(rows == 600 for _, rows in blocks) and len(blocks) == 1
    assert tiled.shape == (10, 600, 600)
    assert _rel_max(tiled, untiled) < EXACT_RTOL
    layerwise = empirical_ntk(model, X, budget_bytes=64 * MiB, structure="block-diagonal")
    assert _rel_max(layerwise, untiled) < EXACT_RTOL
    # square blocks contracted in panels of 28 rows on and above the diagonal, within the
    # all-rows group and within tiles of 50 rows
    monkeypatch.setattr(_ntk_autodiff, "PANEL_ROWS", 28)
    few = untiled[:, :150, :150]
    for block_rows in (None, 50):
        panelled = empirical_ntk(
            model, X[:150], block_rows=block_rows, budget_bytes=64 * MiB, **kwargs
        )
        assert _rel_max(panelled, few) < EXACT_RTOL, block_rows


def _must_not_run(*args, **kwargs):
    raise AssertionError("computation started before the budget was checked")


@pytest.mark.parametrize("method", ["auto", "layerwise", "autodiff"])
def test_a_budget_too_small_fails_before_any_computation(monkeypatch, method):
    model, X = _budget_case()
    monkeypatch.setattr(_ntk_autodiff, "row_jacobian", _must_not_run)
    monkeypatch.setattr(_ntk_layers, "capture", _must_not_run)
    # the full kernel alone: 6000 x 6000 float64 = 275 MiB
    refusal = r"`budget_bytes` 64 MiB cannot hold the 6000 x 6000 float64 kernel \(275 MiB\)"
    with pytest.raises(TooLarge, match=refusal):
        empirical_ntk(model, X, method=method, budget_bytes=64 * MiB)
    # the block-diagonal kernel fits (27.5 MiB), but no tile beside it
    kernel = 10 * 600 * 600 * 8
    with pytest.raises(TooLarge, match="and the smallest (Jacobian tile|layer-wise work set)"):
        empirical_ntk(
            model, X, method=method, structure="block-diagonal", budget_bytes=kernel + 1000
        )


def test_explicit_block_rows_must_fit_the_budget():
    model, X = _budget_case()
    with pytest.raises(TooLarge, match="Jacobian tile of 600 rows"):
        empirical_ntk(
            model, X, method="autodiff", structure="trace", block_rows=600, budget_bytes=8 * MiB
        )
    K = empirical_ntk(
        model, X[:30], method="autodiff", structure="trace", block_rows=7, budget_bytes=8 * MiB
    )
    assert _rel_max(K, empirical_ntk(model, X[:30], structure="trace")) < EXACT_RTOL


# --------------------------------------------------------------------------------------------
# Bad arguments name their field.


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"structure": "diagonal"}, "structure"),
        ({"budget_bytes": 0}, "budget_bytes"),
        ({"budget_bytes": 1.5}, "budget_bytes"),
        ({"X2": np.ones((3, 5))}, "X2"),
        ({"X2": np.full((3, 4), np.nan)}, "X2"),
        ({"X2": np.ones(4)}, "X2"),
        ({"method": "layerwise", "model": TwoLayerReLU(4, 8)}, "method"),
        ({"method": "closed_form"}, "method"),
        ({"X": np.ones((3, 5))}, "model"),  # the MLP cannot take 5 features
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    kwargs = {"model": _mlp(), "X": _rows(5, 4), **kwargs}
    with pytest.raises(ValueError, match=f"`{field}`"):
        empirical_ntk(**kwargs)

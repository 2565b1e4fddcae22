"""Tests for ntkdyn.models: parameterisations, the authors' initialisation, validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ntkdyn.models import DeepReLU, TwoLayerReLU

#: A sample mean/variance may sit this many standard errors from its expectation.
Z_MAX = 4.0


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _authors_model(d: int, m: int, seed: int, dtype: torch.dtype) -> nn.Sequential:
    """The notebook's construction, verbatim (docs/paper.md), under ``torch.manual_seed(seed)``.

    Their default dtype was float32; for float64 we build it with float64 as the default dtype.
    The caller wraps this in ``torch.random.fork_rng`` so the global RNG is not leaked.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, 1, bias=False))
        with torch.no_grad():
            net[0].weight.normal_(0, 1 / m)
            net[2].weight.uniform_(-1, 1)
    finally:
        torch.set_default_dtype(previous)
    return net


# --------------------------------------------------------------------------------------------
# Theory parameterisation.


def test_theory_structure_and_forward_formula():
    d, m, n = 6, 300, 9
    net = TwoLayerReLU(d, m, generator=_gen(0))
    assert net.parameterization == "theory" and net.width == m and net.d == d
    assert net.W.shape == (m, d) and net.W.dtype == torch.float64
    assert [name for name, _ in net.named_parameters()] == ["W"]
    assert [name for name, _ in net.named_buffers()] == ["a"]
    assert net.bias is None
    assert net.output_scale == pytest.approx(m**-0.5, rel=1e-15)
    assert set(net.a.tolist()) == {-1.0, 1.0}
    X = torch.randn(n, d, generator=_gen(1), dtype=torch.float64)
    # f(x) = m^{-1/2} sum_r a_r relu(w_r . x), written out entry by entry.
    W, a = net.W.detach(), net.a.tolist()
    expected = torch.tensor(
        [sum(a[r] * max(float(W[r] @ x), 0.0) for r in range(m)) / math.sqrt(m) for x in X],
        dtype=torch.float64,
    )
    out = net(X)
    assert out.shape == (n,)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    assert net(X[:1]).shape == (1,)


def test_theory_only_first_layer_receives_gradients():
    net = TwoLayerReLU(4, 50, generator=_gen(0))
    X = torch.randn(5, 4, generator=_gen(1), dtype=torch.float64)
    y = torch.randn(5, generator=_gen(2), dtype=torch.float64)
    nn.MSELoss()(net(X), y).backward()
    assert net.W.grad is not None and torch.count_nonzero(net.W.grad) > 0
    assert not net.a.requires_grad and net.a.grad is None


def test_theory_init_distribution():
    d, m = 8, 4096
    net = TwoLayerReLU(d, m, generator=_gen(3))
    w = net.W.detach().flatten()
    count = w.numel()
    assert abs(float(w.mean())) < Z_MAX / math.sqrt(count)  # N(0, 1): sd of mean 1/sqrt(N)
    assert abs(float(w.var()) - 1.0) < Z_MAX * math.sqrt(2.0 / count)
    plus = float((net.a > 0).double().mean())
    assert abs(plus - 0.5) < Z_MAX * 0.5 / math.sqrt(m)


# --------------------------------------------------------------------------------------------
# Notebook parameterisation: the authors' exact weights.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("seed", [218, 7])
@pytest.mark.parametrize("source", ["generator", "global"])
def test_notebook_reproduces_authors_construction(dtype, seed, source):
    d, m, n = 30, 64, 11
    with torch.random.fork_rng():
        reference = _authors_model(d, m, seed, dtype)
        if source == "generator":
            net = TwoLayerReLU(d, m, parameterization="notebook", generator=_gen(seed), dtype=dtype)
        else:
            torch.manual_seed(seed)
            net = TwoLayerReLU(d, m, parameterization="notebook", dtype=dtype)
    assert torch.equal(net.W, reference[0].weight)
    assert torch.equal(net.bias, reference[0].bias)
    assert torch.equal(net.a, reference[2].weight.reshape(m))
    X = torch.rand(n, d, generator=_gen(99), dtype=dtype)  # pixel-like inputs in [0, 1]
    assert torch.equal(net(X), reference(X).squeeze(-1))
    assert net(X).shape == (n,)


def test_notebook_structure_and_init_ranges():
    d, m = 20, 2000
    net = TwoLayerReLU(d, m, parameterization="notebook", generator=_gen(218))
    W, bias, a = net.W.detach(), net.bias.detach(), net.a.detach()
    assert sorted(name for name, p in net.named_parameters() if p.requires_grad) == [
        "W",
        "a",
        "bias",
    ]
    assert net.output_scale == 1.0
    assert bias.shape == (m,) and a.shape == (m,)
    count = W.numel()
    # W ~ N(0, (1/m)^2): the sample variance of N draws has relative sd sqrt(2/N).
    assert abs(float(W.var()) * m**2 - 1.0) < Z_MAX * math.sqrt(2.0 / count)
    bound = 1 / math.sqrt(d)
    assert float(bias.abs().max()) <= bound
    assert float(a.abs().max()) <= 1.0
    # Uniform(-1, 1) has variance 1/3 (sd of the sample variance ~ sqrt(4/45 / m)).
    assert abs(float(a.var()) - 1 / 3) < Z_MAX * math.sqrt(4 / 45 / m)


# --------------------------------------------------------------------------------------------
# Randomness is explicit.


@pytest.mark.parametrize("parameterization", ["theory", "notebook"])
def test_generator_determinism_and_global_rng_untouched(parameterization):
    state = torch.get_rng_state()
    first = TwoLayerReLU(5, 40, parameterization=parameterization, generator=_gen(11))
    second = TwoLayerReLU(5, 40, parameterization=parameterization, generator=_gen(11))
    other = TwoLayerReLU(5, 40, parameterization=parameterization, generator=_gen(12))
    deep = DeepReLU(5, 40, 2, generator=_gen(11))
    assert torch.equal(torch.get_rng_state(), state)  # only the explicit generator was used
    assert torch.equal(first.W, second.W) and torch.equal(first.a, second.a)
    assert not torch.equal(first.W, other.W)
    assert torch.equal(deep.weights[0], DeepReLU(5, 40, 2, generator=_gen(11)).weights[0])


# --------------------------------------------------------------------------------------------
# Deep network.


def test_deep_structure_and_forward_formula():
    d, m, depth, n = 4, 32, 3, 6
    net = DeepReLU(d, m, depth, generator=_gen(5))
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(m, d), (m, m), (m, m), (1, m)]
    assert all(p.dtype == torch.float64 and p.requires_grad for p in net.parameters())
    X = torch.randn(n, d, generator=_gen(6), dtype=torch.float64)
    # docs/mathematics.md §1.5 with column vectors: f^h = W^h g^{h-1}, g^h = sqrt(2/m) relu(f^h).
    g = X.T
    for W in list(net.parameters())[:-1]:
        g = math.sqrt(2 / m) * torch.clamp(W @ g, min=0)
    expected = (list(net.parameters())[-1] @ g).reshape(n)
    out = net(X)
    assert out.shape == (n,)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)


def test_deep_weights_standard_normal():
    net = DeepReLU(16, 512, 2, generator=_gen(8))
    for W in net.parameters():
        W = W.detach()
        count = W.numel()
        assert abs(float(W.mean())) < Z_MAX / math.sqrt(count)
        assert abs(float(W.var()) - 1.0) < Z_MAX * math.sqrt(2.0 / count)


# --------------------------------------------------------------------------------------------
# Validation at the boundary.


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"d": 0, "width": 4}, "d"),
        ({"d": 3, "width": -1}, "width"),
        ({"d": 3, "width": 2.5}, "width"),
        ({"d": 3, "width": True}, "width"),
        ({"d": 3, "width": 4, "parameterization": "ntk"}, "parameterization"),
        ({"d": 3, "width": 4, "dtype": torch.int64}, "dtype"),
        ({"d": 3, "width": 4, "dtype": "float64"}, "dtype"),
        ({"d": 3, "width": 4, "generator": 0}, "generator"),
    ],
)
def test_two_layer_validation(kwargs, field):
    d, width = kwargs.pop("d"), kwargs.pop("width")
    with pytest.raises(ValueError, match=f"`{field}`"):
        TwoLayerReLU(d, width, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((3, 4, 0), {}, "depth"),
        ((3, 0, 2), {}, "width"),
        (("3", 4, 2), {}, "d"),
        ((3, 4, 2), {"dtype": torch.complex128}, "dtype"),
    ],
)
def test_deep_validation(args, kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        DeepReLU(*args, **kwargs)

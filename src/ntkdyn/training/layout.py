"""Where each network's hidden units live in the width-concatenated ensemble, and the
per-network segment-sum over them.

The sum must never mix networks (a diverging network's inf/NaN must not reach another network)
and must be reproducible run to run:

* CPU: rows are packed without gaps and ``index_add_`` adds each network's rows sequentially in
  unit order, so a network's sum does not depend on the other networks at all.
* other devices (CUDA): ``index_add_`` uses atomics (order not fixed) and a one-hot GEMM would
  turn one network's inf into NaN for all (inf * 0). Instead every network is padded to a
  multiple of ``CHUNK`` rows with *inert* units (zero weights, zero output weight: they output
  0, receive gradient 0 and stay 0 under every rule), the rows are summed per chunk by a
  reshape-sum and the chunk sums per network by a padded gather + sum. Equal widths need no
  padding (one reshape-sum).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["CHUNK", "UnitLayout"]

#: Rows per chunk of the two-level segment-sum on non-CPU devices (padding < CHUNK per network;
#: the widths' greatest common divisor is used instead when it is larger).
CHUNK = 64


class UnitLayout:
    """Row ranges of N networks in a unit-major ``(M, .)`` tensor and their segment-sum."""

    def __init__(self, widths: list[int], device: torch.device, *, chunked: bool | None = None):
        self.widths = list(widths)
        self.N = len(widths)
        self.device = device
        if chunked is None:  # tests force the chunked sum on CPU to cover the CUDA code path
            chunked = device.type != "cpu"
        if not chunked:
            self.chunk = None
            padded = self.widths
        elif len(set(self.widths)) == 1:
            self.chunk = self.widths[0]
            padded = self.widths
        else:  # no padding when the widths share a large enough divisor (E2: 500)
            common = math.gcd(*self.widths)
            self.chunk = max(common, CHUNK)
            padded = [-(-w // self.chunk) * self.chunk for w in self.widths]
        self.starts = np.cumsum([0] + padded)[:-1]
        self.M = int(sum(padded))
        counts = torch.as_tensor(padded, device=device)
        self.net = torch.repeat_interleave(torch.arange(self.N, device=device), counts)
        self._gather: torch.Tensor | None = None  # chunk rows to sum per network, if padded
        if self.chunk is not None and len(set(self.widths)) > 1:
            per_net = [p // self.chunk for p in padded]
            total = sum(per_net)
            index = np.full((self.N, max(per_net)), total)  # `total` points at a zero row
            first = np.cumsum([0] + per_net)
            for j, c in enumerate(per_net):
                index[j, :c] = np.arange(first[j], first[j] + c)
            self._gather = torch.as_tensor(index.reshape(-1), device=device)

    def rows(self, j: int) -> slice:
        """The real (non-padding) rows of network ``j``."""
        return slice(int(self.starts[j]), int(self.starts[j]) + self.widths[j])

    def place(self, parts: list[torch.Tensor], **to: Any) -> torch.Tensor:
        """Stack per-network ``(m_j, ...)`` tensors into one ``(M, ...)`` tensor (zero padding)."""
        out = torch.zeros((self.M,) + tuple(parts[0].shape[1:]), **to)
        for j, part in enumerate(parts):
            out[self.rows(j)] = part.to(**to)
        return out

    def sum(self, Q: torch.Tensor) -> torch.Tensor:
        """Per-network sums of the rows of ``Q (M, n)``: ``(N, n)``."""
        n = Q.shape[1]
        if self.chunk is None:
            out = torch.zeros(self.N, n, dtype=Q.dtype, device=Q.device)
            return out.index_add_(0, self.net, Q)
        chunks = Q.view(-1, self.chunk, n).sum(1)
        if self._gather is None:
            return chunks
        chunks = torch.cat([chunks, chunks.new_zeros(1, n)])
        return chunks.index_select(0, self._gather).view(self.N, -1, n).sum(1)

    def per_network(self, values: torch.Tensor) -> torch.Tensor:
        """Per-network sums of a per-row vector ``(M,)``: ``(N,)``.

        Checkpoint-only work: a loop over networks (reproducible on every device).
        """
        return torch.stack([values[self.rows(j)].sum() for j in range(self.N)])

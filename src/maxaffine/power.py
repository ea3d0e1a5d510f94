"""Max-affine spline operators (MASO) and their power diagrams.

A MASO with K units of R pieces each on inputs of dimension D,

.. math::
    [S(x)]_k = \\max_{r} \\left( \\langle A_{k,r}, x \\rangle + B_{k,r} \\right),
    \\qquad A \\in \\mathbb{R}^{K \\times R \\times D},\\; B \\in \\mathbb{R}^{K \\times R}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError


@dataclass(frozen=True)
class MASO:
    """A max-affine spline operator ``S(x)_k = max_r <A[k, r], x> + B[k, r]``.

    Attributes
    ----------
    A : Tensor, shape (K, R, D)
        Slopes of every piece of every unit. Padding pieces (units with fewer pieces
        than R) have ``B = -inf``.
    B : Tensor, shape (K, R)
        Offsets.
    """

    A: torch.Tensor
    B: torch.Tensor

    def __post_init__(self) -> None:
        if self.A.dim() != 3 or self.B.shape != self.A.shape[:2]:
            raise InputError(
                f"MASO needs A of shape (K, R, D) and B of shape (K, R); got "
                f"{tuple(self.A.shape)} and {tuple(self.B.shape)}"
            )

    @property
    def n_units(self) -> int:
        return self.A.shape[0]

    @property
    def n_pieces(self) -> int:
        return self.A.shape[1]

    @property
    def in_features(self) -> int:
        return self.A.shape[2]

    def pieces(self, x: torch.Tensor) -> torch.Tensor:
        """Value of every piece, shape (N, K, R), for inputs ``x`` of shape (N, D)."""
        x = x.reshape(x.shape[0], -1).to(self.A.dtype)
        return torch.einsum("krd,nd->nkr", self.A, x) + self.B

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """``S(x)``, shape (N, K), for inputs ``x`` of shape (N, D) (or (N, *in_shape))."""
        return self.pieces(x).amax(-1)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """VQ code: the argmax piece of every unit, int64 of shape (N, K) (ties: first)."""
        return self.pieces(x).argmax(-1)


__all__ = ["MASO"]

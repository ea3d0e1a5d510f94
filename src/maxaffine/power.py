"""Max-affine spline operators (MASO) and their power diagrams.

A MASO with K units of R pieces each on inputs of dimension D,

.. math::
    [S(x)]_k = \\max_{r} \\left( \\langle A_{k,r}, x \\rangle + B_{k,r} \\right),
    \\qquad A \\in \\mathbb{R}^{K \\times R \\times D},\\; B \\in \\mathbb{R}^{K \\times R}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError, NotConvexError


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

    def __repr__(self) -> str:
        return (f"MASO(n_units={self.n_units}, n_pieces={self.n_pieces}, "
                f"in_features={self.in_features}, dtype={str(self.A.dtype).removeprefix('torch.')})")

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


def _layer_pieces(model, layer: str, x: torch.Tensor, start: str | None):
    """MASO pieces (B, K, R, D), (B, K, R) of piecewise node ``layer`` as a function of the
    output of ``start`` (default: the network input), restricted to the regions of ``x``."""
    from .affine import affine_map
    from .trace import _flatten_vars

    tr = _as_trace(model, x)
    node = tr.node(layer)
    if not node.piecewise:
        raise InputError(
            f"layer {layer!r} is not a piecewise (VQ-coded) node; choose one of {', '.join(tr.piecewise)}"
        )
    var_inputs = _flatten_vars(node.fx_node.args, node.var)
    if len(var_inputs) != 1:
        raise NotConvexError(
            f"layer {layer!r} combines {len(var_inputs)} branches; its MASO view needs a single "
            f"pre-activation (stack the branches and use maxout)"
        )
    pre = tr._by_fx[var_inputs[0].name]
    x = tr.prepare(x)
    with torch.no_grad():
        record = tr.run(x, prepared=True)
        ctx = tr.context(record, layer)
        if pre.kind == "input" and start is None:
            D = tr.in_features
            A_pre = torch.eye(D, dtype=tr.dtype).expand(len(x), D, D)
            b_pre = torch.zeros(len(x), D, dtype=tr.dtype)
        else:
            m = affine_map(tr, x, start=start, end=pre.name)
            A_pre, b_pre = m.A, m.b
        A, B, code_to_piece = node.rule.pieces(ctx, A_pre, b_pre)
        q = code_to_piece(record.codes[node.name])
    return tr, A, B, q


def _as_trace(model, x):
    from .trace import as_trace

    return as_trace(model, x)


def maso(model, layer: str, x: torch.Tensor, *, start: str | None = None) -> MASO:
    """The MASO of one layer (its affine op and piecewise nonlinearity) on the region of ``x``.

    .. math::
        z_k = \\max_r \\left( \\langle A_{k,r}, h \\rangle + B_{k,r} \\right)

    where ``h`` is the output of ``start`` (default: the network input). When every layer
    between ``start`` and ``layer`` is affine (e.g. the first layer, or ``start`` = the
    previous nonlinearity) the MASO is global; otherwise it is the layer's MASO pulled back
    through the earlier layers and valid on the region of ``x``.

    Parameters
    ----------
    model : nn.Module or Trace
    layer : str
        Name of a piecewise node (``trace(model, x).piecewise``).
    x : Tensor, shape (1, *in_shape) or in_shape
        The point whose region the pull-back belongs to.
    start : str, optional
        Layer whose output is the MASO's input.

    Returns
    -------
    MASO
        With ``A`` (K, R, D) and ``B`` (K, R); ``maso.evaluate(h)`` reproduces the layer.

    Raises
    ------
    NotConvexError
        For non-convex nodes (Hardtanh, clamp to [lo, hi]) which are differences of MASOs.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)).double()
    >>> x = torch.randn(1, 2, dtype=torch.float64)
    >>> S = maxaffine.maso(net, "1", x)
    >>> S.A.shape, torch.allclose(S.evaluate(x), net[1](net[0](x)))
    (torch.Size([3, 2, 2]), True)
    """
    x = torch.as_tensor(x)
    _, A, B, _ = _layer_pieces(model, layer, x if x.dim() > 1 and x.shape[0] == 1 else x[None]
                               if x.dim() == 1 else x[:1], start)
    return MASO(A[0], B[0])


@dataclass(frozen=True)
class PowerDiagram:
    """The power-diagram cells of one layer for a batch of inputs.

    A MASO layer's partition is a power diagram: with ``μ[q] = Σ_k A_{k,q_k}`` and
    ``rad[q] = ||μ[q]||² + 2 Σ_k B_{k,q_k}``,

    .. math::
        \\arg\\max_q \\sum_k \\langle A_{k,q_k}, x\\rangle + B_{k,q_k}
        = \\arg\\min_q \\|x - μ[q]\\|^2 - \\mathrm{rad}[q].

    Attributes
    ----------
    layer : str
    A : Tensor, shape (B, K, R, D)
        The layer's MASO pieces for each input (pulled back to the input of ``start`` and
        restricted to the input's region of the earlier layers).
    B : Tensor, shape (B, K, R)
    code : Tensor, shape (B, K)
        Piece index chosen by every unit (the VQ code).
    centroid : Tensor, shape (B, D)
        ``μ[q]`` of each input's cell.
    radius : Tensor, shape (B,)
        ``rad[q]`` of each input's cell.
    """

    layer: str
    A: torch.Tensor
    B: torch.Tensor
    code: torch.Tensor
    centroid: torch.Tensor
    radius: torch.Tensor

    def __repr__(self) -> str:
        B, K, R, D = self.A.shape
        return (f"PowerDiagram(layer={self.layer!r}, batch={B}, n_units={K}, n_pieces={R}, "
                f"in_features={D}, cells={len(torch.unique(self.code, dim=0)) if B else 0})")

    def centroid_of(self, code: torch.Tensor) -> torch.Tensor:
        """``μ[q]`` for codes ``q`` of shape (B, K) or (B, M, K) (M candidate codes per input)."""
        q, squeeze = _codes3(code)
        idx = q[..., None, None].expand(*q.shape, 1, self.A.shape[-1])
        A = self.A[:, None].expand(-1, q.shape[1], -1, -1, -1)
        mu = A.gather(3, idx).squeeze(3).sum(2)
        return mu[:, 0] if squeeze else mu

    def radius_of(self, code: torch.Tensor) -> torch.Tensor:
        """``rad[q]`` for codes of shape (B, K) or (B, M, K)."""
        q, squeeze = _codes3(code)
        mu = self.centroid_of(q)
        Bq = self.B[:, None].expand(-1, q.shape[1], -1, -1).gather(3, q[..., None]).squeeze(3)
        rad = (mu**2).sum(-1) + 2 * Bq.sum(-1)
        return rad[:, 0] if squeeze else rad

    def power_distance(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """``||x − μ[q]||² − rad[q]`` for inputs (B, D) and codes (B, K) or (B, M, K)."""
        q, squeeze = _codes3(code)
        x = x.reshape(x.shape[0], 1, -1).to(self.A.dtype)
        d = ((x - self.centroid_of(q)) ** 2).sum(-1) - self.radius_of(q)
        return d[:, 0] if squeeze else d

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The power-diagram cell (code) of points ``x`` (B, D): each unit's argmax piece."""
        x = x.reshape(x.shape[0], -1).to(self.A.dtype)
        return (torch.einsum("bkrd,bd->bkr", self.A, x) + self.B).argmax(-1)


def _codes3(code: torch.Tensor) -> tuple[torch.Tensor, bool]:
    code = code.long()
    return (code[:, None], True) if code.dim() == 2 else (code, False)


def power_diagram(model, layer: str, x: torch.Tensor, *, start: str | None = None) -> PowerDiagram:
    """Centroid and radius of the power-diagram cell of every input at one layer.

    For a ReLU layer ``μ[q] = Wᵀq`` and ``rad[q] = ||Wᵀq||² + 2bᵀq``. For a deeper layer ℓ on
    the region ω of the earlier layers (``z = A_ω x + b_ω``) the cells are a power diagram
    restricted to ω with ``μ_ω[q] = A_ωᵀ μ^{(ℓ)}[q]`` and
    ``rad_ω[q] = ||μ_ω[q]||² + 2(⟨μ^{(ℓ)}[q], b_ω⟩ + Σ_k B^{(ℓ)}_{k,q_k})``.

    Parameters
    ----------
    model : nn.Module or Trace
    layer : str
        A piecewise node (``trace(model, x).piecewise``).
    x : Tensor, shape (B, *in_shape)
    start : str, optional
        Express the cells in the output space of this layer instead of the input space.

    Returns
    -------
    PowerDiagram

    References
    ----------
    R. Balestriero, R. Baraniuk, "The Geometry of Deep Networks: Power Diagram Subdivision",
    NeurIPS 2019.

    Examples
    --------
    >>> import torch, maxaffine
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU()).double()
    >>> x = torch.randn(3, 2, dtype=torch.float64)
    >>> pd = maxaffine.power_diagram(net, "1", x)
    >>> torch.equal(pd.assign(x), pd.code)
    True
    """
    tr, A, B, q = _layer_pieces(model, layer, x, start)
    mu = A.gather(2, q[..., None, None].expand(-1, -1, 1, A.shape[-1])).squeeze(2).sum(1)
    Bq = B.gather(2, q[..., None]).squeeze(2)
    rad = (mu**2).sum(-1) + 2 * Bq.sum(-1)
    return PowerDiagram(layer, A, B, q, mu, rad)


__all__ = ["MASO", "PowerDiagram", "maso", "power_diagram"]

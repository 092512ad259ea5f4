"""Transformer building blocks with the reference's parameter names.

Attention keeps ``torch.nn.MultiheadAttention``'s packed parameters
(``in_proj_weight``, ``in_proj_bias``, ``bias_k``, ``bias_v``, ``out_proj``) so
reference checkpoints load unchanged, but splits the math into a projection and
a swappable ``core``: the Triton backend replaces ``core`` with a fused kernel
that reads the packed projection output directly. Blocks and MLPs expose their
LayerNorms, residual add + LayerNorm and first layer + GELU the same way (hooks,
see :mod:`bindrt.model.hooks`); the defaults here are the reference math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: ``core(qkv, bias_k, bias_v, num_heads, causal) -> out``: packed (B, N, 3D) projection -> (B, N, D).
AttentionCore = Callable[[Tensor, Tensor | None, Tensor | None, int, bool], Tensor]
#: ``norm(x, weight, bias, eps) -> LayerNorm(x)`` over the last dim.
Norm = Callable[[Tensor, Tensor | None, Tensor | None, float], Tensor]
#: ``add_norm(x, update, weight, bias, eps) -> (x + update, LayerNorm(x + update))``.
AddNorm = Callable[[Tensor, Tensor, Tensor | None, Tensor | None, float], tuple[Tensor, Tensor]]
#: ``linear_gelu(x, weight, bias) -> gelu_erf(x @ weight.T + bias)``: the MLP's first layer and activation.
LinearGelu = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def multihead_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias_k: Tensor | None,
    bias_v: Tensor | None,
    num_heads: int,
    causal: bool = False,
    key_limit: Tensor | None = None,
) -> Tensor:
    """MultiheadAttention math on projected (B, Nq, D) queries and (B, Nk, D) keys/values; returns (B, Nq, D).

    bias_k/bias_v (1, 1, D) are appended as one extra key/value at the end of the
    sequence, as ``nn.MultiheadAttention(add_bias_kv=True)`` does. ``key_limit`` (B,) lets
    query row b see keys 0..key_limit[b] only (a single causal query at that position).
    """
    batch, q_len, dim = q.shape
    head_dim = dim // num_heads
    if bias_k is not None and bias_v is not None:
        k = torch.cat([k, bias_k.to(k.dtype).expand(batch, 1, dim)], dim=1)
        v = torch.cat([v, bias_v.to(v.dtype).expand(batch, 1, dim)], dim=1)
    q = q.reshape(batch, q_len, num_heads, head_dim).transpose(1, 2)
    k = k.reshape(batch, k.shape[1], num_heads, head_dim).transpose(1, 2)
    v = v.reshape(batch, v.shape[1], num_heads, head_dim).transpose(1, 2)
    mask = None
    if key_limit is not None:
        mask = (torch.arange(k.shape[2], device=k.device) <= key_limit[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    return out.transpose(1, 2).reshape(batch, q_len, dim)


def sdpa_attention(qkv: Tensor, bias_k: Tensor | None, bias_v: Tensor | None, num_heads: int, causal: bool) -> Tensor:
    """The default attention core: :func:`multihead_attention` on a packed (B, N, 3D) projection."""
    q, k, v = qkv.split(qkv.shape[-1] // 3, dim=-1)
    return multihead_attention(q, k, v, bias_k, bias_v, num_heads, causal)


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """The default :data:`Norm`: what ``nn.LayerNorm(D, eps)`` computes."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def add_layer_norm(
    x: Tensor, update: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor]:
    """The default :data:`AddNorm`: the residual sum and its LayerNorm, in the reference's order."""
    x = x + update
    return x, F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The default :data:`LinearGelu`: ``nn.Linear`` (bias in the GEMM) then exact GELU."""
    return F.gelu(F.linear(x, weight, bias))


class Attention(nn.Module):
    HOOKS: ClassVar[tuple[str, ...]] = ("core",)

    def __init__(self, dim: int, num_heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        if bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(dim, dim)
        self.core: AttentionCore = sdpa_attention
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias_kv:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        return self.out_proj(self.core(qkv, self.bias_k, self.bias_v, self.num_heads, causal))

    def forward_query(self, x: Tensor, query: Tensor, key_limit: Tensor | None = None) -> Tensor:
        """Attention output for one query row per item, (B, 1, D), with keys and values from all of ``x``.

        ``query`` (B, 1, D) is one (normed) row of ``x``; ``key_limit`` (B,) is its position when the
        attention is causal (it sees keys 0..position), None otherwise. Projects only that row to Q:
        a third of the packed projection and 1/N of the attention of :meth:`forward`.
        """
        dim = x.shape[-1]
        q = F.linear(query, self.in_proj_weight[:dim], self.in_proj_bias[:dim])
        k, v = F.linear(x, self.in_proj_weight[dim:], self.in_proj_bias[dim:]).split(dim, dim=-1)
        return self.out_proj(
            multihead_attention(q, k, v, self.bias_k, self.bias_v, self.num_heads, key_limit=key_limit)
        )


class Mlp(nn.Module):
    HOOKS: ClassVar[tuple[str, ...]] = ("linear_gelu",)

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.linear_gelu: LinearGelu = linear_gelu
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.linear_gelu(x, self.fc1.weight, self.fc1.bias))


class Block(nn.Module):
    """Pre-norm block; drop path and layer scale of the reference are inactive at inference."""

    HOOKS: ClassVar[tuple[str, ...]] = ("norm", "add_norm")

    def __init__(self, dim: int, num_heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, bias_kv)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm: Norm = layer_norm  # applies norm_1's parameters
        self.add_norm: AddNorm = add_layer_norm  # the attention residual, then norm_2's parameters

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        n1, n2 = self.norm_1, self.norm_2
        update = self.attn(self.norm(x, n1.weight, n1.bias, n1.eps), causal)
        x, h = self.add_norm(x, update, n2.weight, n2.bias, n2.eps)
        return x + self.mlp(h)

    def forward_token(self, x: Tensor, index: Tensor | None, causal: bool = False) -> Tensor:
        """This block's output row at ``index`` (B,) (None: token 0) only, (B, D); equal to ``forward(x)[rows, index]``.

        Every other operation of a block is row-wise, so only attention needs the other rows
        (as keys and values).
        """
        n1, n2 = self.norm_1, self.norm_2
        h = self.norm(x, n1.weight, n1.bias, n1.eps)
        if index is None:
            x_row, h_row = x[:, :1], h[:, :1]
        else:
            rows = torch.arange(x.shape[0], device=x.device)
            x_row, h_row = x[rows, index].unsqueeze(1), h[rows, index].unsqueeze(1)
        y, h_row = self.add_norm(
            x_row, self.attn.forward_query(h, h_row, index if causal else None), n2.weight, n2.bias, n2.eps
        )
        return (y + self.mlp(h_row))[:, 0]


class Trunk(nn.Module):
    def __init__(self, dim: int, num_blocks: int, num_heads: int, bias_kv: bool, pre_norm: bool, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        # Key name mirrors the reference's Sequential(LayerNorm, Rearrange).
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6)) if pre_norm else None
        self.blocks = nn.ModuleList(Block(dim, num_heads, bias_kv) for _ in range(num_blocks))

    def forward(self, x: Tensor) -> Tensor:
        if self.pre_transformer_layer is not None:
            x = self.pre_transformer_layer(x)
        for block in self.blocks:
            x = block(x, self.causal)
        return x

    def forward_token(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """The output row at ``index`` (None: token 0), (B, D), computing the last block for that row only."""
        if self.pre_transformer_layer is not None:
            x = self.pre_transformer_layer(x)
        if len(self.blocks) == 0:
            rows = torch.arange(x.shape[0], device=x.device)
            return x[:, 0] if index is None else x[rows, index]
        for block in self.blocks[:-1]:
            x = block(x, self.causal)
        return self.blocks[-1].forward_token(x, index, self.causal)

"""The six ImageBind encoders: stem -> [cls] + position -> trunk -> head -> postprocess.

Submodule names reproduce the reference state-dict keys below each
``modality_{preprocessors,trunks,heads,postprocessors}.<modality>`` prefix, so
``bindrt.model.checkpoint`` maps reference keys with a prefix swap only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bindrt.config import MODALITIES, ImageBindConfig
from bindrt.errors import UnknownModalityError
from bindrt.layouts import IMU_CHANNELS, IMU_SAMPLES, VOCAB_SIZE
from bindrt.model.layers import Trunk

TEXT_CONTEXT = 77
IMU_WINDOW = 8

#: Fixed (non-learnable) output scales of the reference; loaded from checkpoints, used as init otherwise.
INIT_LOGIT_SCALE = {"text": 1 / 0.07, "audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
MAX_LOGIT_SCALE = 100.0


#: ``embed(x, weight, stride, cls_token, pos_embed, norm_weight, norm_bias, eps) -> (B, 1 + L, D)``:
#: the whole patch stem on the tokenizer's input (projection without bias or padding, tokens, the
#: LayerNorm when ``norm_weight`` is not None, CLS in front, positions added).
PatchEmbed = Callable[[Tensor, Tensor, tuple[int, ...], Tensor, Tensor, Tensor | None, Tensor | None, float], Tensor]


def repeat_to_two_frames(x: Tensor) -> Tensor:
    """Images become two identical frames so the video stem (kernel 2 in time) applies."""
    if x.ndim == 4:
        x = x.unsqueeze(2)
    if x.shape[2] == 1:
        x = x.expand(-1, -1, 2, -1, -1)
    return x


def imu_windows(x: Tensor, window: int) -> Tensor:
    """(B, C, S) -> (B, S / window, C * window): window-major tokens, channel-major inside a token."""
    batch, channels, samples = x.shape
    windows = x.reshape(batch, channels, samples // window, window)
    return windows.permute(0, 2, 1, 3).reshape(batch, samples // window, channels * window)


def _norm_cls_pos(
    tokens: Tensor,
    cls_token: Tensor,
    pos_embed: Tensor,
    norm_weight: Tensor | None,
    norm_bias: Tensor | None,
    eps: float,
) -> Tensor:
    if norm_weight is not None:  # before CLS is prepended: CLS is not normalised
        tokens = F.layer_norm(tokens, tokens.shape[-1:], norm_weight, norm_bias, eps)
    cls = cls_token.expand(tokens.shape[0], -1, -1)
    return torch.cat([cls, tokens], dim=1) + pos_embed


def vision_patch_embed(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, ...],
    cls_token: Tensor,
    pos_embed: Tensor,
    norm_weight: Tensor | None,
    norm_bias: Tensor | None,
    eps: float,
) -> Tensor:
    """The vision :data:`PatchEmbed`: frames repeated to two, ``Conv3d``, tokens."""
    tokens = F.conv3d(repeat_to_two_frames(x), weight, stride=stride).flatten(2).transpose(1, 2)
    return _norm_cls_pos(tokens, cls_token, pos_embed, norm_weight, norm_bias, eps)


def conv_patch_embed(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, ...],
    cls_token: Tensor,
    pos_embed: Tensor,
    norm_weight: Tensor | None,
    norm_bias: Tensor | None,
    eps: float,
) -> Tensor:
    """The audio, depth and thermal :data:`PatchEmbed`: ``Conv2d``, tokens."""
    tokens = F.conv2d(x, weight, stride=stride).flatten(2).transpose(1, 2)
    return _norm_cls_pos(tokens, cls_token, pos_embed, norm_weight, norm_bias, eps)


def imu_patch_embed(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, ...],
    cls_token: Tensor,
    pos_embed: Tensor,
    norm_weight: Tensor | None,
    norm_bias: Tensor | None,
    eps: float,
) -> Tensor:
    """The IMU :data:`PatchEmbed`: windows of ``stride[0]`` samples, ``Linear``."""
    tokens = F.linear(imu_windows(x, stride[0]), weight)
    return _norm_cls_pos(tokens, cls_token, pos_embed, norm_weight, norm_bias, eps)


class RepeatToTwoFrames(nn.Module):
    """Holds index 0 of the vision stem (the reference's ``proj.0``); the math is :func:`repeat_to_two_frames`."""

    def forward(self, x: Tensor) -> Tensor:
        return repeat_to_two_frames(x)


class PatchStem(nn.Module):
    """The stem's parameters under the reference names; the tokenizer's ``embed`` applies them.

    ``proj`` is a bias-free convolution or linear layer (vision: behind a parameterless frame
    repeat, ``proj.1``); ``stride`` is its stride (IMU: the window length).
    """

    def __init__(self, proj: nn.Module, norm_dim: int | None, stride: tuple[int, ...]) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = nn.LayerNorm(norm_dim, eps=1e-5) if norm_dim else None
        self.stride = stride

    @property
    def weight(self) -> Tensor:
        proj = self.proj[-1] if isinstance(self.proj, nn.Sequential) else self.proj
        return proj.weight


class PositionEmbedding(nn.Module):
    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, dim))


class PatchTokenizer(nn.Module):
    """Stem tokens, a learned CLS token in front, learned positions added: all in the ``embed`` hook."""

    HOOKS: ClassVar[tuple[str, ...]] = ("embed",)

    def __init__(
        self, stem_name: str, stem: PatchStem, dim: int, num_patches: int, embed: PatchEmbed, pos_on_helper: bool = True
    ) -> None:
        super().__init__()
        self.stem_name = stem_name
        self.add_module(stem_name, stem)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        if pos_on_helper:
            self.pos_embedding_helper = PositionEmbedding(num_patches + 1, dim)
        else:  # the IMU preprocessor holds pos_embed itself
            self.pos_embed = nn.Parameter(torch.empty(1, num_patches + 1, dim))
        self.embed: PatchEmbed = embed

    @property
    def stem(self) -> PatchStem:
        return getattr(self, self.stem_name)

    @property
    def position(self) -> Tensor:
        helper = getattr(self, "pos_embedding_helper", None)
        return helper.pos_embed if helper is not None else self.pos_embed

    def forward(self, x: Tensor) -> Tensor:
        stem = self.stem
        norm = stem.norm_layer
        nw, nb, eps = (norm.weight, norm.bias, norm.eps) if norm is not None else (None, None, 1e-5)
        return self.embed(x, stem.weight, stem.stride, self.cls_token, self.position, nw, nb, eps)


class TextTokenizer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB_SIZE, dim)
        self.pos_embed = nn.Parameter(torch.empty(1, TEXT_CONTEXT, dim))
        # Kept for checkpoint parity; attention uses the equivalent causal flag.
        self.register_buffer("mask", torch.full((TEXT_CONTEXT, TEXT_CONTEXT), float("-inf")).triu_(1))

    def forward(self, ids: Tensor) -> Tensor:
        return self.token_embedding(ids) + self.pos_embed


class SelectToken(nn.Module):
    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.index]


class TextHead(nn.Module):
    """Projects the end-of-text token: it has the highest id, so argmax finds it."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: Tensor, ids: Tensor) -> Tensor:
        eot = ids.argmax(dim=-1)
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eot])


class Normalize(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1, p=2)


class LogitScale(nn.Module):
    def __init__(self, init: float, learnable: bool) -> None:
        super().__init__()
        value = torch.tensor(math.log(init))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def forward(self, x: Tensor) -> Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=MAX_LOGIT_SCALE) * x


def _conv_tokenizer(stem_name: str, dim: int, kernel: int, stride: int, num_patches: int) -> PatchTokenizer:
    conv = nn.Conv2d(1, dim, kernel_size=kernel, stride=stride, bias=False)
    return PatchTokenizer(stem_name, PatchStem(conv, dim, (stride, stride)), dim, num_patches, conv_patch_embed)


def build_tokenizer(modality: str, dim: int) -> nn.Module:
    if modality == "vision":
        kernel = (2, 14, 14)
        proj = nn.Sequential(RepeatToTwoFrames(), nn.Conv3d(3, dim, kernel_size=kernel, stride=kernel, bias=False))
        return PatchTokenizer("rgbt_stem", PatchStem(proj, None, kernel), dim, 256, vision_patch_embed)
    if modality == "text":
        return TextTokenizer(dim)
    if modality == "audio":  # 128 mel x 204 frames, kernel 16 stride 10 -> 12 x 19
        return _conv_tokenizer("rgbt_stem", dim, 16, 10, 12 * 19)
    if modality == "depth":
        return _conv_tokenizer("depth_stem", dim, 16, 16, 196)
    if modality == "thermal":
        return _conv_tokenizer("rgbt_stem", dim, 16, 16, 196)
    if modality == "imu":
        stem = PatchStem(nn.Linear(IMU_CHANNELS * IMU_WINDOW, dim, bias=False), dim, (IMU_WINDOW,))
        return PatchTokenizer("imu_stem", stem, dim, IMU_SAMPLES // IMU_WINDOW, imu_patch_embed, pos_on_helper=False)
    raise UnknownModalityError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")


def build_head(modality: str, dim: int, out_dim: int) -> nn.Module:
    if modality == "text":
        return TextHead(dim, out_dim)
    layers: list[nn.Module] = [nn.LayerNorm(dim, eps=1e-6), SelectToken(0)]
    if modality == "imu":
        layers.append(nn.Dropout(0.5))  # inactive at inference; keeps the reference index 3
    layers.append(nn.Linear(dim, out_dim, bias=False))
    return nn.Sequential(*layers)


def build_postprocessor(modality: str) -> nn.Module:
    if modality == "vision":
        return Normalize()
    return nn.Sequential(Normalize(), LogitScale(INIT_LOGIT_SCALE[modality], learnable=modality == "text"))


class ModalityEncoder(nn.Module):
    """One modality's tower; takes a preprocessed batch in the reference layout.

    Multi-clip inputs (audio (B,S,1,128,204), video (B,S,3,2,224,224)) fold the
    clip axis into the batch and average the S postprocessed embeddings, as the
    reference does.
    """

    def __init__(self, modality: str, config: ImageBindConfig) -> None:
        super().__init__()
        dim = config.embed_dim(modality)
        self.modality = modality
        self.preprocessor = build_tokenizer(modality, dim)
        self.trunk = Trunk(
            dim,
            config.num_blocks(modality),
            config.num_heads(modality),
            bias_kv=modality not in ("vision", "text"),
            pre_norm=modality == "vision",
            causal=modality == "text",
        )
        self.head = build_head(modality, dim, config.out_embed_dim)
        self.postprocessor = build_postprocessor(modality)
        self.multi_clip_ndim = {"vision": 6, "audio": 5}.get(modality)

    def forward(self, x: Tensor) -> Tensor:
        if self.multi_clip_ndim is not None and x.ndim == self.multi_clip_ndim:
            batch, clips = x.shape[0], x.shape[1]
            emb = self.embed(x.flatten(0, 1))
            return emb.reshape(batch, clips, -1).mean(dim=1)
        return self.embed(x)

    def embed(self, x: Tensor) -> Tensor:
        tokens = self.trunk(self.preprocessor(x))
        pooled = self.head(tokens, x) if self.modality == "text" else self.head(tokens)
        return self.postprocessor(pooled)

    def embed_pooled(self, x: Tensor) -> Tensor:
        """:meth:`embed` with the last transformer block computed for the pooled token only.

        The head reads one token (CLS, or text's end-of-text token) and every op after the
        last attention is row-wise, so the other rows of the last block are dead work: about
        1/12 of a 12-block tower. Same math, so the same embeddings up to float rounding;
        the ONNX export uses it (the torch backend keeps the reference's order of operations).
        """
        tokens = self.preprocessor(x)
        if self.modality == "text":
            return self.postprocessor(self.head.proj(self.trunk.forward_token(tokens, x.argmax(dim=-1))))
        pooled = self.trunk.forward_token(tokens)
        for layer in self.head:
            if not isinstance(layer, SelectToken):
                pooled = layer(pooled)
        return self.postprocessor(pooled)


def init_weights(encoder: ModalityEncoder) -> ModalityEncoder:
    """Fresh-training initialisation in the reference's style (trunc-normal 0.02)."""
    for module in encoder.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for name, param in encoder.named_parameters():
        if name.endswith(("cls_token", "pos_embed")):
            nn.init.trunc_normal_(param, std=0.02)
    return encoder

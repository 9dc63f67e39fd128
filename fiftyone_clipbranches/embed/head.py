"""The code head: a small MLP mapping 512-d CLIP embeddings to 32-d unit vectors."""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fiftyone_clipbranches.embed.atomic import write_bytes_atomic
from fiftyone_clipbranches.embed.losses import (
    clip_contrastive,
    koleo,
    similarity_distillation,
)
from fiftyone_clipbranches.embed.pca import PCAProjection
from fiftyone_clipbranches.embed.quantizer import _as_matrix, unit_rows

HEAD_FORMAT = "clipbranches-code-head"
HEAD_VERSION = 1


class CodeHead(nn.Module):
    """``(n, in_dim)`` embeddings -> ``(n, out_dim)`` unit vectors.

    ``z = normalize(A (x - mu) + MLP(x))``: a linear path ``A`` (initialised with PCA) plus
    a residual MLP with ``hidden`` widths (GELU, last layer zero-initialised), so training
    starts from the PCA projection and only improves on it. One head is shared by images
    and texts, so queries land in the same space as the catalogue.
    """

    def __init__(
        self, in_dim: int = 512, out_dim: int = 32, hidden: tuple[int, ...] = (512,)
    ):
        super().__init__()
        for name, v in (("in_dim", in_dim), ("out_dim", out_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        hidden = tuple(hidden)
        if not all(isinstance(h, int) and h > 0 for h in hidden):
            raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}")
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        self.register_buffer("mean", torch.zeros(in_dim))
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU()]
            width = h
        last = nn.Linear(width, out_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*layers, last)
        # Scale of the student similarities during training only; not used by project().
        self.logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))

    def config(self) -> dict:
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden": list(self.hidden),
        }

    def init_from_pca(self, pca: PCAProjection) -> None:
        """Set the linear path to the PCA projection, scaled to about unit-norm output."""
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(pca.mean_))
            self.linear.weight.copy_(torch.from_numpy(pca.components_))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x - self.mean) + self.mlp(x)
        return F.normalize(z, dim=-1)

    def project(self, embeddings, batch_size: int = 65536) -> np.ndarray:
        """Float ``(n, in_dim)`` -> float32 ``(n, out_dim)`` unit vectors."""
        x, _ = unit_rows(_as_matrix(embeddings, "embeddings", dim=self.in_dim))
        out = np.empty((x.shape[0], self.out_dim), dtype=np.float32)
        was_training = self.training
        self.eval()
        with torch.inference_mode():
            for s in range(0, x.shape[0], batch_size):
                out[s : s + batch_size] = self(
                    torch.from_numpy(x[s : s + batch_size])
                ).numpy()
        self.train(was_training)
        return out

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> None:
        """Write config, weights and ``metadata`` to one file, atomically."""
        meta = dict(self.training_info if hasattr(self, "training_info") else {})
        meta.update(metadata or {})
        payload = {
            "format": HEAD_FORMAT,
            "version": HEAD_VERSION,
            "config": self.config(),
            "metadata": meta,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        write_bytes_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CodeHead:
        """Read a head written by :meth:`save`."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupted or foreign file
            raise ValueError(f"{path} is not a readable code head file: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != HEAD_FORMAT:
            raise ValueError(f"{path} is not a code head file")
        if payload.get("version") != HEAD_VERSION:
            raise ValueError(
                f"{path} has head format version {payload.get('version')}, this code "
                f"reads version {HEAD_VERSION}; retrain the head"
            )
        cfg = payload["config"]
        head = cls(cfg["in_dim"], cfg["out_dim"], tuple(cfg["hidden"]))
        head.load_state_dict(payload["state_dict"])
        head.training_info = payload.get("metadata", {})
        return head.eval()


def _normalise(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return F.normalize(t, dim=1)


def exact_neighbours(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices ``(n, k)`` of each row's ``k`` most similar other rows (inner product)."""
    out = torch.empty((x.shape[0], k), dtype=torch.int64)
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            sims = x[s : s + chunk] @ x.T
            rows = torch.arange(sims.shape[0])
            sims[rows, rows + s] = float("-inf")
            out[s : s + chunk] = sims.topk(k, dim=1).indices
    return out


def _sample_batch(gen, n, neighbours, batch_size, group):
    """Half the batch: anchors with ``group - 1`` of their neighbours; half random."""
    n_anchor = max(1, batch_size // (2 * group))
    anchors = torch.randint(n, (n_anchor,), generator=gen)
    pick = torch.randint(neighbours.shape[1], (n_anchor, group - 1), generator=gen)
    local = torch.cat(
        [anchors[:, None], neighbours[anchors[:, None], pick]], dim=1
    ).reshape(-1)
    rand = torch.randint(n, (batch_size - local.numel(),), generator=gen)
    return torch.unique(torch.cat([local, rand]))


def _check_pairs(captions_pairs, in_dim):
    if captions_pairs is None:
        return None
    if not isinstance(captions_pairs, tuple | list) or len(captions_pairs) != 2:
        raise ValueError("captions_pairs must be a tuple (image_emb, caption_emb)")
    img = _as_matrix(captions_pairs[0], "captions_pairs[0]", dim=in_dim)
    txt = _as_matrix(captions_pairs[1], "captions_pairs[1]", dim=in_dim)
    if img.shape[0] != txt.shape[0] or img.shape[0] < 2:
        raise ValueError(
            "captions_pairs needs >= 2 rows, the same number for both arrays"
        )
    return _normalise(img), _normalise(txt)


@dataclass(frozen=True)
class HeadTrainingSettings:
    """Validated hyper-parameters of :func:`train_head` (see there)."""

    out_dim: int = 32
    hidden: tuple[int, ...] = (512,)
    steps: int = 600
    batch_size: int = 512
    lr: float = 1e-3
    tau_teacher: float = 0.02
    tau_text: float = 0.01
    koleo_weight: float = 0.1
    n_neighbours: int = 16
    group: int = 4
    seed: int = 0

    def __post_init__(self):
        for name in ("out_dim", "steps", "batch_size", "n_neighbours", "group"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.batch_size < 2 or self.n_neighbours < 2:
            raise ValueError("batch_size and n_neighbours must be >= 2")
        if not 2 <= self.group <= self.n_neighbours + 1:
            raise ValueError(
                f"group must be in [2, n_neighbours + 1], got {self.group}"
            )
        if self.koleo_weight < 0:
            raise ValueError(f"koleo_weight must be >= 0, got {self.koleo_weight}")
        if min(self.tau_teacher, self.tau_text, self.lr) <= 0:
            raise ValueError("tau_teacher, tau_text and lr must be > 0")


def train_head(
    image_emb,
    text_emb=None,
    captions_pairs=None,
    *,
    out_dim: int = 32,
    hidden: tuple[int, ...] = (512,),
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 512,
    lr: float = 1e-3,
    tau_teacher: float = 0.02,
    tau_text: float = 0.01,
    koleo_weight: float = 0.1,
    n_neighbours: int = 16,
    group: int = 4,
    max_train: int = 50_000,
    progress: bool | Callable[[float], None] = True,
    seed: int = 0,
    num_threads: int = 1,
) -> CodeHead:
    """Train a :class:`CodeHead` on the user's own embeddings (CPU, about a minute).

    Loss per step, on a batch mixing anchors with their 512-d neighbours and random rows:
    similarity distillation (the student's softmax-ed similarity rows must match the
    512-d teacher's at temperature ``tau_teacher``; text-image rows at ``tau_text`` when
    ``text_emb`` is given) + ``koleo_weight`` x KoLeo (spreads codes over the sphere)
    + the CLIP contrastive loss on ``captions_pairs`` when given.

    Args:
        image_emb: float ``(n, D)`` catalogue embeddings, ``n >= max(2 out_dim, 8)``.
        text_emb: optional float ``(m, D)`` text embeddings of a prompt vocabulary.
        captions_pairs: optional ``(image_emb (p, D), caption_emb (p, D))``.
        hidden: hidden widths of the residual MLP (``()`` = linear head).
        steps / epochs: optimiser steps, or passes over the (sub-sampled) catalogue;
            default ``steps=600``.
        n_neighbours, group: each batch holds anchors with ``group - 1`` of their
            ``n_neighbours`` nearest 512-d neighbours (half the batch) and random rows.
        max_train: rows sampled from the catalogue for training (exact 512-d
            neighbours are computed for them: O(max_train^2 D)).
        progress: True (a tqdm bar of the steps), False, or ``fn(fraction done)``
            called about 100 times as the steps go.
        num_threads: torch threads while training. The matrices are small, so one
            thread is nearly as fast as several on an idle machine and many times
            faster on a busy one (spinning OpenMP threads).

    Returns:
        The trained head (eval mode) with ``training_info`` (losses, settings).
    """
    x_np = _as_matrix(image_emb, "image_emb")
    n, in_dim = x_np.shape
    if n < max(2 * out_dim, 8):
        raise ValueError(
            f"train_head needs at least {max(2 * out_dim, 8)} embeddings, got {n}"
        )
    if steps is not None and epochs is not None:
        raise ValueError("pass steps or epochs, not both")
    for name, v in (("max_train", max_train), ("num_threads", num_threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(epochs, bool) or (
        epochs is not None and (not isinstance(epochs, int) or epochs < 1)
    ):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    hidden = tuple(hidden)
    gen = torch.Generator().manual_seed(seed)
    if n > max_train:
        keep = torch.randperm(n, generator=gen)[:max_train].sort().values.numpy()
        x_np, n = x_np[keep], max_train
    batch_size = min(batch_size, n) if isinstance(batch_size, int) else batch_size
    if epochs is not None:
        steps = epochs * math.ceil(n / batch_size)
    settings = HeadTrainingSettings(
        out_dim,
        hidden,
        600 if steps is None else steps,
        batch_size,
        lr,
        tau_teacher,
        tau_text,
        koleo_weight,
        n_neighbours,
        group,
        seed,
    )
    CodeHead(in_dim, out_dim, hidden)  # validates the architecture before any work
    t_emb = None
    if text_emb is not None:
        t_emb = _normalise(_as_matrix(text_emb, "text_emb", dim=in_dim))
    pairs = _check_pairs(captions_pairs, in_dim)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return _train(_normalise(x_np), t_emb, pairs, settings, gen, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(x, t_emb, pairs, cfg: HeadTrainingSettings, gen, progress) -> CodeHead:
    n, in_dim = x.shape
    torch.manual_seed(cfg.seed)
    head = CodeHead(in_dim, cfg.out_dim, cfg.hidden)
    head.init_from_pca(PCAProjection(cfg.out_dim).fit(x.numpy()))
    neighbours = exact_neighbours(x, min(cfg.n_neighbours, n - 1))
    group = min(cfg.group, neighbours.shape[1] + 1)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1
    )
    history = []
    start = time.perf_counter()
    head.train()
    report = progress if callable(progress) else None
    every = max(1, cfg.steps // 100)
    for step in tqdm(
        range(cfg.steps),
        disable=report is not None or not progress,
        desc="train head",
        unit="step",
    ):
        if report is not None and step % every == 0:
            report(step / cfg.steps)
        xb = x[_sample_batch(gen, n, neighbours, cfg.batch_size, group)]
        zb = head(xb)
        scale = head.logit_scale.exp().clamp(max=100.0)
        loss = similarity_distillation(xb, xb, zb, zb, cfg.tau_teacher, scale, True)
        if cfg.koleo_weight > 0:
            loss = loss + cfg.koleo_weight * koleo(zb)
        if t_emb is not None:
            pick = torch.randint(
                t_emb.shape[0], (min(256, t_emb.shape[0]),), generator=gen
            )
            tb = t_emb[pick]
            loss = loss + similarity_distillation(
                tb, xb, head(tb), zb, cfg.tau_text, scale, False
            )
        if pairs is not None:
            p = pairs[0].shape[0]
            pick = torch.randint(p, (min(cfg.batch_size, p),), generator=gen)
            loss = loss + clip_contrastive(
                head(pairs[0][pick]), head(pairs[1][pick]), scale
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
    head.eval()
    head.training_info = dict(
        asdict(cfg),
        hidden=list(cfg.hidden),
        n_train=int(n),
        with_text=t_emb is not None,
        with_captions=pairs is not None,
        seconds=round(time.perf_counter() - start, 2),
        loss_first=history[0],
        loss_last=float(np.mean(history[-max(1, cfg.steps // 20) :])),
    )
    return head

"""Training losses of the code head (torch, batch-level)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_distillation(
    teacher_q: torch.Tensor,
    teacher_k: torch.Tensor,
    student_q: torch.Tensor,
    student_k: torch.Tensor,
    tau_teacher: float,
    student_scale: torch.Tensor,
    exclude_self: bool,
) -> torch.Tensor:
    """Cross-entropy between softmax-ed similarity rows of teacher and student.

    For each query row, the teacher's cosine similarities to the keys (temperature
    ``tau_teacher``) define a target distribution over the keys; the student's
    similarities (scaled by ``student_scale``) must reproduce it. Rows: ``(q, D)`` and
    ``(k, D)`` teacher vectors, ``(q, d)`` and ``(k, d)`` student vectors, all unit norm.
    With ``exclude_self`` the diagonal (query i == key i) is masked out.
    """
    t = teacher_q @ teacher_k.T / tau_teacher
    s = student_q @ student_k.T * student_scale
    if exclude_self:
        eye = torch.eye(t.shape[0], t.shape[1], dtype=torch.bool, device=t.device)
        t = t.masked_fill(eye, float("-inf"))
        s = s.masked_fill(eye, float("-inf"))
    target = F.softmax(t, dim=1)
    log_p = F.log_softmax(s, dim=1)
    return -(target * log_p.masked_fill(target == 0, 0.0)).sum(dim=1).mean()


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy regulariser (Sablayrolles et al. 2019).

    ``-mean_i log(||z_i - z_nn(i)|| + eps)`` with ``nn(i)`` the row of maximal inner
    product other than ``i``; minimising it spreads the rows of ``z`` ``(B, d)`` apart.
    """
    z = F.normalize(z.float(), dim=1)
    with torch.no_grad():
        sims = z @ z.T
        sims.fill_diagonal_(-2.0)
        nn_idx = sims.argmax(dim=1)
    dist = (z - z[nn_idx]).norm(dim=1)
    return -torch.log(dist + eps).mean()


def clip_contrastive(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor):
    """Symmetric InfoNCE on matched image/caption rows ``(B, d)`` (CLIP loss)."""
    logits = img @ txt.T * scale
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

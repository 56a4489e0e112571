"""The ReLA student: one module that holds every network a run trains or tracks.

ReLA (Sun, Jiang & Lin, arXiv:2405.14669) first trains a backbone to map two views of an image
onto a fixed prior target through a linear transfer head (:mod:`rela_hf.rela`), then switches for
good (:mod:`rela_hf.switch`) to a self-supervised method (:mod:`rela_hf.methods`: BYOL, DINO,
SimCLR). :class:`ReLAStudent` composes the backbone, the method (its heads, loss and teacher), the
transfer head and an online linear probe.

Why one module with one ``forward`` for both phases:

- Under DDP only the wrapper's ``forward`` runs the gradient-synchronisation hooks, so both
  objectives must go through it (``phase=`` selects one); byol-pytorch's hidden forward hooks are
  what broke under multi-GPU (byol-pytorch#9, #24).
- A method's teacher is a *submodule*: ``accelerator.save_state`` saves it with the online weights,
  and a resumed run continues with the same teacher (accelerate#1666).
- The teacher's parameters and the frozen transfer head (the official default) have
  ``requires_grad=False``, so neither DDP nor the optimizer sees them.

The backbone runs once per view here, and the method gets the features: during the ReLA phase only
``L_ReLA`` drives the backbone and the method's heads are not run (their gradients stay ``None``;
DDP needs ``find_unused_parameters=True`` for that, and the optimizer skips parameters without
gradients). The teacher is still moved after every optimizer step (:meth:`ReLAStudent.update_teacher`,
called by the training loop). The online classifier (monitoring only) trains in both phases on
*detached* features of the first view, so it never shapes the representation.

Examples:
    >>> import timm, torch
    >>> backbone = timm.create_model("test_resnet", num_classes=0)
    >>> model = ReLAStudent(backbone, "byol", rela_dim=16, num_classes=10)
    >>> views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    >>> out = model(views, phase="rela", targets=torch.randn(4, 16), labels=torch.arange(4))
    >>> out["loss"].backward()
    >>> model.update_teacher(momentum=0.99)
    >>> sorted(out)
    ['classifier_accuracy', 'classifier_loss', 'loss', 'rela_loss']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rela_hf.methods import Method, MethodBatch, build_method
from rela_hf.methods.byol import BYOL_OUT_DIM, BYOLOptions
from rela_hf.rela import TransferHead, rela_loss
from rela_hf.switch import PHASE_RELA, PHASE_SSL

__all__ = ["PHASES", "ReLABYOL", "ReLAStudent"]

PHASES = (PHASE_RELA, PHASE_SSL)


class ReLAStudent(nn.Module):
    """Backbone + SSL method (heads, loss, teacher) + optional transfer head and online probe.

    Args:
        backbone: Feature extractor returning pooled features ``(B, backbone.num_features)``
            (a timm model with ``num_classes=0``, e.g. from :func:`rela_hf.backbones.create_backbone`).
        method: The method after the switch: a registered name (``"byol"``, ``"dino"``,
            ``"simclr"``, ``"supervised"``) built here with ``method_options``.
        method_options: The method's ``Options`` or a mapping of its fields.
        rela_dim: Width ``k`` of the ReLA targets; builds the transfer head ``W``
            (``Linear(num_features, k)``). ``None``: no ReLA phase (the method's baseline).
        trainable_transfer_head: Learn ``W`` (the paper's "linear transport") instead of keeping
            the official code's fixed random projection.
        num_classes: Classes of the dataset's labels: the online linear classifier (monitoring
            only) and supervised methods use them; ``None`` (no labels) builds no classifier.

    Attributes:
        backbone: the online backbone; ``method``: the SSL method (its heads and teacher);
        transfer_head: ``W``, or ``None``; classifier: the online linear probe, or ``None``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        method: str = "byol",
        *,
        method_options: Any = None,
        rela_dim: int | None = None,
        trainable_transfer_head: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        feature_dim = getattr(backbone, "num_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise TypeError(
                f"ReLAStudent needs a backbone with an integer `num_features` (its pooled feature "
                f"width), got {type(backbone).__name__} with num_features={feature_dim!r}; create "
                "it with rela_hf.backbones.create_backbone or timm.create_model(..., num_classes=0)."
            )
        self.feature_dim = feature_dim
        self.backbone = backbone
        # The method's heads first, then its teacher copies: they start equal to the online nets.
        self.method: Method = build_method(method, backbone, method_options, num_classes=num_classes)
        self.transfer_head = (
            TransferHead(feature_dim, rela_dim, trainable=trainable_transfer_head) if rela_dim is not None else None
        )
        self.classifier = nn.Linear(feature_dim, num_classes) if num_classes else None

    @property
    def rela_dim(self) -> int | None:
        """Target width ``k`` the transfer head expects, ``None`` without one."""
        return None if self.transfer_head is None else self.transfer_head.out_features

    def forward(
        self,
        views: Sequence[Tensor],
        *,
        phase: str,
        targets: Tensor | None = None,
        labels: Tensor | None = None,
        step: int = 0,
        rela_weight: float = 0.0,
    ) -> dict[str, Tensor]:
        """Loss of one batch of views in the given phase.

        Args:
            views: ``(B, C, H, W)`` batches, one per view: the two ReLA views in the ReLA phase,
                the method's views (``method.view_transforms``) after the switch.
            phase: ``"rela"`` (regress ``targets`` through the transfer head) or ``"ssl"``.
            targets: ReLA targets ``(B, k)``; required in the ReLA phase, ignored otherwise.
            labels: Class labels ``(B,)`` for the online classifier; optional.
            step: The optimizer step, for the method's schedules.
            rela_weight: After the switch, the weight of the ReLA loss added to the method's
                (:mod:`rela_hf.handover`; 0: the official hard switch, nothing is added).

        Returns:
            ``loss``: the scalar to backpropagate (the phase's objective plus the classifier's
            cross-entropy); ``rela_loss`` or the method's loss (``byol_loss``, ...): the objective
            alone; and, with labels and a classifier, ``classifier_loss`` and
            ``classifier_accuracy``. All but ``loss`` are detached.
        """
        if phase not in PHASES:
            raise ValueError(f"ReLAStudent: unknown phase {phase!r}; expected one of {PHASES}.")
        views = list(views)
        if phase == PHASE_RELA:
            features = [self.backbone(view) for view in views[:2]]
            name, objective = "rela_loss", self._rela_objective(features, targets)
        else:
            features = [self.backbone(view) for view in views]
            batch = MethodBatch(features=features, views=views, labels=labels, step=step)
            name, objective = self.method.loss_name, self.method(batch)
        out = {name: objective.detach()}
        loss = objective
        if phase != PHASE_RELA and rela_weight > 0:  # a soft hand-over: the targets still pull
            second = features[1] if len(features) > 1 else features[0]
            rela = self._rela_objective([features[0], second], targets)
            loss = loss + rela_weight * rela
            out["rela_loss"] = rela.detach()
        if self.classifier is not None and labels is not None:
            # Detached features: the probe watches the representation, it never shapes it.
            logits = self.classifier(features[0].detach())
            classifier_loss = F.cross_entropy(logits.float(), labels)
            loss = loss + classifier_loss
            out["classifier_loss"] = classifier_loss.detach()
            out["classifier_accuracy"] = (logits.argmax(dim=-1) == labels).float().mean().detach()
        out["loss"] = loss
        return out

    def _rela_objective(self, features: list[Tensor], targets: Tensor | None) -> Tensor:
        if self.transfer_head is None:
            raise ValueError(
                "ReLAStudent: the ReLA phase needs a transfer head; build the model with "
                "rela_dim=k (the width of the ReLA targets)."
            )
        if targets is None:
            raise ValueError("ReLAStudent: the ReLA phase needs `targets` of shape (B, k).")
        return rela_loss(self.transfer_head(features[0]), self.transfer_head(features[1]), targets)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """One EMA step of the method's teacher (nothing for methods without one).

        Call once per *optimizer* step (after gradient accumulation), in both phases, on the
        unwrapped model (``accelerator.unwrap_model(model).update_teacher(m)``): every process
        applies the same update to identical weights, so the teachers stay in sync without
        communication.
        """
        self.method.update_teacher(self.backbone, momentum)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: the trainable networks, the method's own groups, and the
        classifier without decay.

        Only parameters with ``requires_grad`` are listed, so a teacher and a frozen transfer
        head stay out of the optimizer (the official code never optimises ``W``). A method may
        declare its own groups (:meth:`~rela_hf.methods.Method.parameter_groups`); its other
        parameters join the main group. The online classifier gets no weight decay, as in
        lightly's benchmarks: it is a probe.
        """
        probe = [] if self.classifier is None else list(self.classifier.parameters())
        method_groups = self.method.parameter_groups(weight_decay) or []
        taken = {id(p) for p in probe} | {id(p) for group in method_groups for p in group["params"]}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        groups = [{"params": main, "weight_decay": weight_decay}, *method_groups]
        if probe:
            groups.append({"params": probe, "weight_decay": 0.0})
        return groups

    def teacher_momentum(self, step: int, total_steps: int, default: float) -> float:
        """The EMA momentum of optimizer ``step``: the method's own schedule, else ``default``."""
        own = self.method.teacher_momentum(step, total_steps)
        return default if own is None else own

    def before_optimizer_step(self, step: int) -> None:
        """The method's hook before ``optimizer.step()`` (after backward and clipping)."""
        self.method.before_optimizer_step(step)

    def after_optimizer_step(self, step: int) -> None:
        """The method's hook after ``optimizer.step()``, before the teacher's EMA update."""
        self.method.after_optimizer_step(step)


class ReLABYOL(ReLAStudent):
    """:class:`ReLAStudent` with BYOL, built from BYOL's options (the original name).

    Args:
        backbone, rela_dim, trainable_transfer_head, num_classes: as for :class:`ReLAStudent`.
        projection_dim: BYOL projection width (256).
        projector_hidden_dim: Projector hidden width; default ``2 * num_features`` (official).
        predictor_hidden_dim: Predictor hidden width; default the projector's hidden width, as in
            the official ReLA code (the BYOL paper uses 4096 for both).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        rela_dim: int | None = None,
        trainable_transfer_head: bool = False,
        projection_dim: int = BYOL_OUT_DIM,
        projector_hidden_dim: int | None = None,
        predictor_hidden_dim: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        options = BYOLOptions(projection_dim, projector_hidden_dim, predictor_hidden_dim)
        super().__init__(
            backbone,
            "byol",
            method_options=options,
            rela_dim=rela_dim,
            trainable_transfer_head=trainable_transfer_head,
            num_classes=num_classes,
        )

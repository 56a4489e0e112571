"""The ReLA-BYOL student: one module that holds every network a run trains or tracks.

BYOL (Grill et al., arXiv:2006.07733) trains an online backbone + projector + predictor against a
momentum (EMA) copy of the backbone + projector. ReLA (Sun, Jiang & Lin, arXiv:2405.14669) first
trains the same backbone to map two views of an image onto a fixed prior target through a linear
transfer head, then switches to BYOL for good. :class:`ReLABYOL` composes the building blocks of
:mod:`rela_hf.byol`, :mod:`rela_hf.momentum` and :mod:`rela_hf.rela` (which know nothing of each
other) into that student.

Why one module with one ``forward`` for both phases:

- Under DDP only the wrapper's ``forward`` runs the gradient-synchronisation hooks, so both
  objectives must go through it (``phase=`` selects one); byol-pytorch's hidden forward hooks are
  what broke under multi-GPU (byol-pytorch#9, #24).
- The EMA target network is a *submodule*: ``accelerator.save_state`` then saves it with the
  online weights, and a resumed run continues with the same teacher (accelerate#1666).
- The target's parameters have ``requires_grad=False``, so neither DDP nor the optimizer sees
  them; the frozen transfer head (the official default) likewise.

During the ReLA phase only ``L_ReLA`` drives the backbone: the projector and predictor are not
run, so their gradients stay ``None`` (DDP needs ``find_unused_parameters=True`` for that, and the
optimizer skips parameters without gradients). The target network is still EMA-updated after
every optimizer step (:meth:`ReLABYOL.update_target`, called by the training loop). The optional
online linear classifier (monitoring only) trains in both phases on *detached* features, so it
never shapes the representation.

Examples:
    >>> import timm, torch
    >>> backbone = timm.create_model("test_resnet", num_classes=0)
    >>> model = ReLABYOL(backbone, rela_dim=16, num_classes=10)
    >>> v1, v2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    >>> out = model(v1, v2, phase="rela", targets=torch.randn(4, 16), labels=torch.arange(4))
    >>> out["loss"].backward()
    >>> model.update_target(momentum=0.99)
    >>> sorted(out)
    ['classifier_accuracy', 'classifier_loss', 'loss', 'rela_loss']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rela_hf.byol import BYOL_OUT_DIM, byol_loss, byol_predictor, byol_projector
from rela_hf.momentum import make_target_network, update_momentum
from rela_hf.rela import TransferHead, rela_loss
from rela_hf.switch import PHASE_BYOL, PHASE_RELA

__all__ = ["PHASES", "ReLABYOL"]

PHASES = (PHASE_RELA, PHASE_BYOL)


class ReLABYOL(nn.Module):
    """Backbone + BYOL heads + EMA target + optional transfer head and online classifier.

    Args:
        backbone: Feature extractor returning pooled features ``(B, backbone.num_features)``
            (a timm model with ``num_classes=0``, e.g. from :func:`rela_hf.backbones.create_backbone`).
        rela_dim: Width ``k`` of the ReLA targets; builds the transfer head ``W``
            (``Linear(num_features, k)``). ``None`` for plain BYOL (no ReLA phase possible).
        trainable_transfer_head: Learn ``W`` (the paper's "linear transport") instead of keeping
            the official code's fixed random projection.
        projection_dim: BYOL projection width (256).
        projector_hidden_dim: Projector hidden width; default ``2 * num_features`` (official).
        predictor_hidden_dim: Predictor hidden width; default the projector's hidden width, as in
            the official ReLA code (the BYOL paper uses 4096 for both).
        num_classes: Classes of the online linear classifier (monitoring only); ``None`` (no
            labels) builds none.

    Attributes:
        backbone, projector, predictor: The online network.
        target_backbone, target_projector: Their momentum copies (no gradients).
        transfer_head: ``W``, or ``None``.
        classifier: The online linear probe, or ``None``.
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
        super().__init__()
        feature_dim = getattr(backbone, "num_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise TypeError(
                f"ReLABYOL needs a backbone with an integer `num_features` (its pooled feature "
                f"width), got {type(backbone).__name__} with num_features={feature_dim!r}; create "
                "it with rela_hf.backbones.create_backbone or timm.create_model(..., num_classes=0)."
            )
        self.feature_dim = feature_dim
        self.backbone = backbone
        self.projector = byol_projector(feature_dim, projector_hidden_dim, projection_dim)
        self.predictor = byol_predictor(
            projection_dim, predictor_hidden_dim or self.projector.hidden_dim
        )
        # Momentum copies are built *after* the online heads so they start identical.
        self.target_backbone = make_target_network(self.backbone)
        self.target_projector = make_target_network(self.projector)
        self.transfer_head = (
            TransferHead(feature_dim, rela_dim, trainable=trainable_transfer_head)
            if rela_dim is not None
            else None
        )
        self.classifier = nn.Linear(feature_dim, num_classes) if num_classes else None

    @property
    def rela_dim(self) -> int | None:
        """Target width ``k`` the transfer head expects, ``None`` without one."""
        return None if self.transfer_head is None else self.transfer_head.out_features

    def forward(
        self,
        view1: Tensor,
        view2: Tensor,
        *,
        phase: str,
        targets: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Loss of one batch of view pairs in the given phase.

        Args:
            view1: First views ``(B, C, H, W)``.
            view2: Second views of the same images.
            phase: ``"rela"`` (regress ``targets`` through the transfer head) or ``"byol"``.
            targets: ReLA targets ``(B, k)``; required in the ReLA phase, ignored otherwise.
            labels: Class labels ``(B,)`` for the online classifier; optional.

        Returns:
            ``loss``: the scalar to backpropagate (the phase's objective plus the classifier's
            cross-entropy); ``rela_loss`` or ``byol_loss``: the objective alone; and, with labels
            and a classifier, ``classifier_loss`` and ``classifier_accuracy``. All but ``loss``
            are detached.
        """
        features1 = self.backbone(view1)
        features2 = self.backbone(view2)
        if phase == PHASE_RELA:
            name, objective = "rela_loss", self._rela_objective(features1, features2, targets)
        elif phase == PHASE_BYOL:
            name, objective = "byol_loss", self._byol_objective(features1, features2, view1, view2)
        else:
            raise ValueError(f"ReLABYOL: unknown phase {phase!r}; expected one of {PHASES}.")
        out = {name: objective.detach()}
        loss = objective
        if self.classifier is not None and labels is not None:
            # Detached features: the probe watches the representation, it never shapes it.
            logits = self.classifier(features1.detach())
            classifier_loss = F.cross_entropy(logits.float(), labels)
            loss = loss + classifier_loss
            out["classifier_loss"] = classifier_loss.detach()
            out["classifier_accuracy"] = (logits.argmax(dim=-1) == labels).float().mean().detach()
        out["loss"] = loss
        return out

    def _rela_objective(self, features1: Tensor, features2: Tensor, targets: Tensor | None) -> Tensor:
        if self.transfer_head is None:
            raise ValueError(
                "ReLABYOL: the ReLA phase needs a transfer head; build the model with rela_dim=k "
                "(the width of the ReLA targets)."
            )
        if targets is None:
            raise ValueError("ReLABYOL: the ReLA phase needs `targets` of shape (B, k).")
        return rela_loss(self.transfer_head(features1), self.transfer_head(features2), targets)

    def _byol_objective(
        self, features1: Tensor, features2: Tensor, view1: Tensor, view2: Tensor
    ) -> Tensor:
        prediction1 = self.predictor(self.projector(features1))
        prediction2 = self.predictor(self.projector(features2))
        with torch.no_grad():
            target1 = self.target_projector(self.target_backbone(view1))
            target2 = self.target_projector(self.target_backbone(view2))
        return byol_loss(prediction1, prediction2, target1, target2)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA step of the target backbone and projector (BYOL eq. 1).

        Call once per *optimizer* step (after gradient accumulation), in both phases, on the
        unwrapped model (``accelerator.unwrap_model(model).update_target(m)``): every process
        applies the same update to identical weights, so the targets stay in sync without
        communication.
        """
        update_momentum(self.backbone, self.target_backbone, momentum)
        update_momentum(self.projector, self.target_projector, momentum)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: the trainable networks, and the classifier without decay.

        Only parameters with ``requires_grad`` are listed, so the target network and a frozen
        transfer head stay out of the optimizer (the official code never optimises ``W``). The
        online classifier gets no weight decay, as in lightly's benchmarks: it is a probe.
        """
        probe = [] if self.classifier is None else list(self.classifier.parameters())
        probe_ids = {id(p) for p in probe}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in probe_ids]
        groups = [{"params": main, "weight_decay": weight_decay}]
        if probe:
            groups.append({"params": probe, "weight_decay": 0.0})
        return groups

"""``ReLATrainer``: ReLA, then the method it accelerates, under Accelerate; importable and resumable.

ReLA (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669) first trains the student to regress fixed,
PCA-whitened prior embeddings ("efficient data") through a linear transfer head, then switches for
good to a method: BYOL (the paper's), DINO, SimCLR or supervised training. The trainer composes the
library's parts in stages, each a short method a reader can find by name:

    setup()           accelerator, resume or fresh start, data, targets, student, optimizer
    train_epoch()     micro-batches until the epoch ends, the switch fires or the budget is spent
    optimizer_step_done()   after each optimizer step: the switch, the monitor, logging, checkpoints
    finish()          last checkpoint, export, summary, final push

``train()`` runs them and returns the :class:`~rela_hf.run_layout.TrainingSummary`. The same code
runs on one CPU, one GPU, or many GPUs and nodes (``accelerate launch``); a notebook calls::

    from rela_hf.training import ReLATrainer, ReLATrainingArguments
    summary = ReLATrainer(ReLATrainingArguments(dataset_name=..., output_dir=...)).train()
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import datasets
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, ProjectConfiguration, set_seed
from accelerate.utils.fsdp_utils import load_fsdp_model
from tqdm.auto import tqdm

from rela_hf.gpu_views import ImageRowsDataset, views_for_batch
from rela_hf.run_layout import RunLayout, TrainingSummary
from rela_hf.seeds import forward_seed
from rela_hf.switch import PHASE_RELA, PHASE_SSL
from rela_hf.training.arguments import ReLATrainingArguments
from rela_hf.training.best_model import BestModel, ValidationEvaluator, load_model_weights
from rela_hf.training.checkpointing import (
    RunComponents,
    find_resume_checkpoint,
    prepare_output_dir,
    restore_run,
    save_run,
)
from rela_hf.training.data import prepare_data
from rela_hf.training.divergence import check_finite_loss, check_finite_weights
from rela_hf.training.fsdp import check_sharded_student, configure_fsdp
from rela_hf.training.optimization import (
    Budget,
    build_optimizer,
    build_scheduler,
    build_training_switch,
    momentum_at,
)
from rela_hf.training.publishing import HubPublisher, build_summary, export_run
from rela_hf.training.run_log import RunLog
from rela_hf.training.state import RunState
from rela_hf.training.step import MetricMeans, training_step
from rela_hf.training.student import build_backbone, build_student, build_train_loader, view_recipes
from rela_hf.training.targets import attach_targets, targets_provenance
from rela_hf.training.views_dataset import ViewDataset

__all__ = ["ReLATrainer", "train"]

logger = get_logger(__name__)


def make_accelerator(args: ReLATrainingArguments) -> Accelerator:
    """The run's Accelerator (precision, trackers, run folder, DDP settings)."""
    layout = RunLayout(args.output_dir)
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,  # None: the launcher's --mixed_precision
        dynamo_backend="inductor" if args.torch_compile else None,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(layout.root), logging_dir=str(layout.logging_dir)),
        kwargs_handlers=[
            # The phase decides which heads get gradients (transfer head in ReLA, the method's
            # heads after the switch), so DDP must look for unused parameters; their gradients
            # stay None and AdamW skips them (no weight decay, no moment update) on every process.
            DistributedDataParallelKwargs(find_unused_parameters=True),
            InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout)),
        ],
    )


class ReLATrainer:
    """Trains a student with ReLA, then its method (see the module docstring).

    Args:
        args: every option of the run.
        accelerator: an existing Accelerator (default: one made from ``args``).
    """

    def __init__(self, args: ReLATrainingArguments, accelerator: Accelerator | None = None) -> None:
        self.args = args
        self.accelerator = accelerator or make_accelerator(args)
        self.layout = RunLayout(args.output_dir)

    # --- the run ------------------------------------------------------------------------------
    def train(self) -> TrainingSummary:
        """Train to the budget (resuming when asked) and return the run's summary."""
        self.setup()
        progress = tqdm(
            total=self.budget.total_steps,
            initial=self.state.step,
            desc="train",
            disable=not self.accelerator.is_local_main_process,
        )
        self.progress = progress
        while self.state.step < self.budget.total_steps:
            self.train_epoch()
        progress.close()
        return self.finish()

    def setup(self) -> None:
        """Everything before the first step, in the order that keeps runs reproducible."""
        args, accelerator = self.args, self.accelerator
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
        if not accelerator.is_local_main_process:
            datasets.utils.logging.set_verbosity_error()
        set_seed(args.seed)  # same initial weights on every process (DDP also broadcasts rank 0's)
        configure_fsdp(args, accelerator)  # FSDP2 only: Hub options, rank-0 loading off
        resume_dir, resumed_state = find_resume_checkpoint(args, accelerator)
        data = prepare_data(args, accelerator)
        backbone = build_backbone(args)  # an unknown backbone fails here, before targets are computed
        dataset, self.target_dim = attach_targets(
            args, accelerator, data.dataset, cast(int, backbone.num_features)
        )  # timm models
        data.dataset = dataset
        train_rows, validation_rows = data.validation.apply(dataset) if data.validation else (dataset, None)
        model = build_student(args, accelerator, backbone, target_dim=self.target_dim, num_classes=data.num_classes)
        loader = build_train_loader(args, model, train_rows, sampler=data.sampler, label_column=data.label_column)
        optimizer = build_optimizer(args, model)
        self.model, self.optimizer, self.train_loader = accelerator.prepare(model, optimizer, loader)
        self.unwrapped = accelerator.unwrap_model(self.model)  # the ReLAStudent: hooks and EMA live there
        check_sharded_student(self.unwrapped)  # under FSDP: the backbone a unit, the teacher sharded
        # ViewDataset (PIL views) or ImageRowsDataset (batched views): build_train_loader made it
        self.views = cast(ViewDataset | ImageRowsDataset, loader.dataset)
        self.recipes = view_recipes(args, model)  # batched views: made on the device, per phase
        self.monitor = data.monitor
        self.validator = ValidationEvaluator(args, train_rows, validation_rows) if validation_rows is not None else None
        self.handover = args.handover_rule()
        self.budget = Budget.of(args, len(self.train_loader), accelerator.num_processes)
        self.switch = build_training_switch(args, self.budget.total_steps)
        self.components = RunComponents(
            switch=self.switch,
            sampler=data.sampler,
            scheduler=build_scheduler(args, self.optimizer.optimizer, self.budget.total_steps),
        )
        self._restore_or_start(resume_dir, resumed_state)
        self.publisher = HubPublisher(args, accelerator)  # pushes in the background, main process only

    def _restore_or_start(self, resume_dir: Path | None, resumed_state: RunState | None) -> None:
        args, accelerator = self.args, self.accelerator
        if resume_dir is not None and resumed_state is not None:
            self.state = restore_run(accelerator, resume_dir, resumed_state, self.components)
        else:
            phase = PHASE_RELA if args.use_rela else PHASE_SSL
            self.state = RunState.fresh(self.layout.root.name, accelerator.num_processes, phase)
        prepare_output_dir(args, accelerator, resuming=resume_dir is not None)
        self.log = RunLog(accelerator, self.layout, self.state, args.to_dict(), resuming=resume_dir is not None)
        self.provenance = targets_provenance(args)
        self.step_means, self.log_means = MetricMeans(), MetricMeans()
        self.window_start, self.window_images = time.perf_counter(), 0
        global_batch = self.budget.images_per_micro_batch * args.gradient_accumulation_steps
        logger.info(
            f"{'ReLA -> ' if args.use_rela else ''}{self.unwrapped.method.title}: {len(self.views)} images, ratio "
            f"{args.data_ratio}, {self.budget.steps_per_epoch} steps/epoch, {self.budget.total_steps} steps, "
            f"global batch {global_batch}, {accelerator.num_processes} process(es) on {accelerator.device}"
        )

    # --- one epoch ------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        """Micro-batches of the current epoch until it ends, the switch fires or the budget ends.

        Mid-epoch (a resume, or right after the switch) the batches already seen are skipped: the
        sampler is deterministic per epoch, so the remaining batches are exactly the same.
        """
        state = self.state
        state.phase = self.switch.phase if self.switch is not None else PHASE_SSL
        if isinstance(self.views, ViewDataset):  # PIL views: the workers' copies pick the phase's
            self.views.set_phase(state.phase)
        loader = self.train_loader
        if state.batch_in_epoch:
            loader = self.accelerator.skip_first_batches(self.train_loader, state.batch_in_epoch)
        loader.set_epoch(state.epoch)  # Accelerate forwards it to the sampler and the dataset
        self.components.sampler.set_epoch(state.epoch)
        self.views.set_epoch(state.epoch)
        self._tick = time.perf_counter()
        for batch in loader:
            self.micro_batch(batch)
            if self.accelerator.sync_gradients and self.optimizer_step_done():
                break
        state.train_seconds += time.perf_counter() - self._tick
        loader.end()  # leaving the loop early skips Accelerate's own end-of-loader bookkeeping
        state.at_epoch_end(self.budget.batches_per_epoch)

    def micro_batch(self, batch: dict[str, Any]) -> None:
        """Forward, backward and (when accumulation completes) the optimizer step and EMA."""
        args, state = self.args, self.state
        # dropout / stochastic depth: seeded by the data position, so a resume repeats them
        torch.manual_seed(forward_seed(args.seed, state.epoch, state.batch_in_epoch, self.accelerator.process_index))
        if self.recipes is not None:  # batched views, made here on the training device
            batch = views_for_batch(
                batch, self.recipes[state.phase], self.accelerator.device, channels_last=args.channels_last
            )
        switch_step = self.switch.switch_step if self.switch is not None else None
        out = training_step(
            self.accelerator,
            self.model,
            self.optimizer,
            batch,
            phase=state.phase,
            momentum=momentum_at(args, self.unwrapped, state.step, self.budget.total_steps),
            step=state.step,
            max_grad_norm=args.max_grad_norm,
            unwrapped=self.unwrapped,
            rela_weight=self.handover.rela_weight(state.step, switch_step) if state.phase == PHASE_SSL else 0.0,
        )
        state.batch_in_epoch += 1
        state.images_seen += self.budget.images_per_micro_batch
        self.window_images += self.budget.images_per_micro_batch
        self.step_means.add(out)
        self.log_means.add(out)

    def optimizer_step_done(self) -> bool:
        """Bookkeeping once per optimizer step; True when the epoch's iterator must stop (the
        switch fired: the next batch needs the method's views; or the budget is spent)."""
        state = self.state
        state.step += 1
        self.components.scheduler.step()
        self.progress.update(1)
        switched = self.update_switch()
        evaluation = self.evaluate_if_due()
        self.log_if_due(evaluation, force=switched)
        self.checkpoint_if_due()
        return switched or state.step >= self.budget.total_steps

    # --- after each optimizer step -------------------------------------------------------------
    def update_switch(self) -> bool:
        """The ReLA switch rule, on this step's ReLA loss (mean over micro-batches and processes,
        all-reduced, so every process takes the same decision). True on the switching step."""
        if self.state.phase != PHASE_RELA:
            self.step_means.reset()  # after the switch: nothing to decide, no host sync needed
            return False
        step_loss = self.step_means.compute(self.accelerator)
        check_finite_loss(step_loss, self.state.step)
        assert self.switch is not None  # the ReLA phase exists only with a switch
        switched = self.switch.update(step_loss["rela_loss"])
        if switched:
            title = self.unwrapped.method.title
            logger.info(
                f"ReLA -> {title} switch ({self.args.switch_rule} rule) at optimizer step {self.state.step}; "
                f"{title} views from step {self.state.step + 1}",
                main_process_only=True,
            )
        return switched

    def evaluate_if_due(self) -> dict[str, float]:
        """The online kNN monitor every ``eval_steps`` and at the end (not counted as training time)."""
        step, total = self.state.step, self.budget.total_steps
        # the monitor exists only with eval_steps > 0 (ReLATrainingArguments.monitor_enabled)
        if self.monitor is None or not (step % cast(int, self.args.eval_steps) == 0 or step == total):
            return {}
        self._pause_clock()
        evaluation = self.monitor(self.unwrapped.backbone, self.accelerator)
        self._tick = time.perf_counter()
        self.state.last_metrics["eval/knn_accuracy"] = evaluation["eval/knn_accuracy"]
        return evaluation

    def log_if_due(self, evaluation: dict[str, float], *, force: bool) -> None:
        """Training metrics every ``logging_steps`` (and at the switch and the end); one record per step."""
        args, state = self.args, self.state
        if not (state.step % args.logging_steps == 0 or force or state.step == self.budget.total_steps):
            if evaluation:
                self.log.log(evaluation, step=state.step)
            return
        now = time.perf_counter()
        metrics = {f"train/{k}": v for k, v in self.log_means.compute(self.accelerator).items()}
        check_finite_loss(metrics, state.step)
        state.last_metrics.update(metrics)
        metrics.update(
            {
                "train/phase": 0.0 if state.phase == PHASE_RELA else 1.0,
                "train/lr": self.components.scheduler.get_last_lr()[0],
                "train/momentum": momentum_at(args, self.unwrapped, state.step - 1, self.budget.total_steps),
                "train/epoch": state.epoch + state.batch_in_epoch / self.budget.batches_per_epoch,
                "train/images_per_second": self.window_images / max(now - self.window_start, 1e-9),
            }
        )
        if (rho := getattr(self.switch, "rho", None)) is not None:  # the adaptive rule's statistic
            metrics["train/rho"] = rho
        self.log.log({**metrics, **evaluation}, step=state.step)
        self.progress.set_postfix(
            {k.split("/")[1]: f"{v:.4g}" for k, v in metrics.items() if "loss" in k or "accuracy" in k}
        )
        self.window_start, self.window_images = now, 0

    def checkpoint_if_due(self) -> None:
        """A checkpoint every ``checkpointing_steps`` (the last step saves in :meth:`finish`)."""
        every, step = self.args.checkpointing_steps, self.state.step
        if not every or step % every != 0 or step >= self.budget.total_steps:
            return
        self._pause_clock()
        self.evaluate_best()
        checkpoint = self.save_checkpoint()
        if self.publisher.pushes_this_save(step):  # hub_strategy every_save / checkpoint
            export_run(self.args, self.accelerator, self.model, self.summary(checkpoint))
            self.publisher.push_save(checkpoint, step)
        self._tick = time.perf_counter()

    def evaluate_best(self) -> None:
        """``load_best_model_at_end``: the validation metric of this step's weights, and whether
        they are the best so far (that checkpoint is then never pruned)."""
        if self.validator is None:
            return
        step, metric = self.state.step, self.validator.metric
        value = self.validator(self.unwrapped.backbone, self.accelerator)
        self.log.log({f"eval/validation_{metric}": value}, step=step)
        self.state.last_metrics[f"eval/validation_{metric}"] = value
        if self.validator.is_better(value, BestModel.from_state(self.state.best)):
            self.state.best = {"step": step, "value": value, "checkpoint": self.layout.checkpoint_dir(step).name}

    # --- checkpoints, summary, the end ------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """``checkpoint-<step>`` of the run now, never of non-finite weights."""
        check_finite_weights(self.unwrapped, self.state.step)  # never a checkpoint, export or push of NaN
        return save_run(
            self.args, self.accelerator, self.state, self.components, batches_per_epoch=self.budget.batches_per_epoch
        )

    def summary(self, checkpoint: Path, exported_step: int | None = None) -> TrainingSummary:
        """The run so far as a :class:`TrainingSummary` (its final checkpoint: ``checkpoint``)."""
        return build_summary(
            self.args,
            self.accelerator,
            self.state,
            self.budget,
            model=self.unwrapped,
            switch=self.switch,
            target_dim=self.target_dim,
            provenance=self.provenance,
            checkpoint=checkpoint,
            exported_step=exported_step,
        )

    def load_best_model(self) -> int:
        """``load_best_model_at_end``: the best checkpoint's weights into the model; returns the
        step of the weights the model now holds."""
        best = BestModel.from_state(self.state.best)
        if not self.args.load_best_model_at_end or best is None or best.step == self.state.step:
            return self.state.step
        assert self.validator is not None  # load_best_model_at_end needs train_val_split, so a validator
        if self.accelerator.is_fsdp2:  # a sharded checkpoint: Accelerate reads it back into the shards
            load_fsdp_model(
                self.accelerator.state.fsdp_plugin, self.accelerator, self.model, self.layout.root / best.checkpoint
            )
        else:
            load_model_weights(self.unwrapped, self.layout.root / best.checkpoint)
        logger.info(
            f"Loaded the best model (step {best.step}, validation {self.validator.metric} {best.value:.4f}); "
            f"the last checkpoint (step {self.state.step}) keeps the final training state."
        )
        return best.step

    def finish(self) -> TrainingSummary:
        """The final checkpoint, the exported backbone (the best one when asked) and summary, the
        final push."""
        accelerator = self.accelerator
        self.evaluate_best()  # the last step is a candidate too
        checkpoint = self.save_checkpoint()
        summary = self.summary(checkpoint, exported_step=self.load_best_model())
        export_run(self.args, accelerator, self.model, summary)
        if accelerator.is_main_process:
            logger.info(f"Backbone exported to {self.layout.backbone_dir}; summary: {summary.to_dict()}")
        self.log.close()
        accelerator.wait_for_everyone()
        accelerator.end_training()
        self.publisher.push_final(checkpoint)  # after the last collective; waits for pushes in flight
        return summary

    def _pause_clock(self) -> None:
        """Count the training time so far; evaluations and checkpoints are not training time."""
        self.state.train_seconds += time.perf_counter() - self._tick


def train(args: ReLATrainingArguments) -> TrainingSummary:
    """Train with ``args`` and return the run's summary (``ReLATrainer(args).train()``)."""
    return ReLATrainer(args).train()

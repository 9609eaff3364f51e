"""The Lightning module of MARLIN pretraining (manual optimisation of generator and critic, see `step.py`).

Critic gradients are averaged across processes by hand; the generator's by DDP, or reduce-scattered by FSDP2
(`configure_model` shards the generator when Lightning's `ModelParallelStrategy` runs the module).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..curves import CURVES, plot_history
from ..models import Critic, Marlin
from ..models.embedding import token_index
from .config import PretrainConfig
from .history import History
from .images import save_reconstruction
from .objective import critic_loss, denormalize_predictions
from .schedule import lr_at, scaled_lrs
from .step import forward_losses, train_iteration

TERMS = ("rec_loss", "adv_loss", "g_loss", "d_loss", "d_fake", "d_real", "gp", "mask_fallback")


def _tokens(batch: dict):
    """The batch's `TokenIndex`, made on the host by `PretrainData.on_before_batch_transfer` (batches from elsewhere:
    made here, which on a GPU waits for the device)."""
    return batch["tokens"] if "tokens" in batch else token_index(batch["mask"])


class PretrainModule(pl.LightningModule):
    """MARLIN generator (`.model`, a `Marlin`) + Wasserstein critic (`.critic`) with manual optimisation."""

    def __init__(self, cfg: PretrainConfig, global_batch: int, total_steps: int, warmup_steps: int,
                 out_dir=None, history: Callable[[], History] | None = None):
        super().__init__()
        self.cfg = cfg
        self.model = Marlin(cfg.model, full_model=True)
        self.critic = Critic(cfg.model)
        self.automatic_optimization = False
        self.global_batch = global_batch
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.lrs = scaled_lrs(cfg.lr_base, cfg.lr_warmup, cfg.lr_min, global_batch)
        self.out_dir = out_dir
        self._open_history = history  # called on global rank 0 at fit start
        self.history: History | None = None
        self.iteration = 0
        self.pictures: list = []
        self._window: dict[str, float] = {}
        self._window_n = 0
        self._micro: dict = {}
        self._first_iteration = 0
        self._t_window = self._t_fit_start = time.perf_counter()
        self.final_state: dict | None = None  # the generator's full float32 weights at the end (global rank 0)

    @property
    def adversarial(self) -> bool:
        return self.cfg.adv_loss

    # ---- sharding ----------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """FSDP2 under `ModelParallelStrategy` (`--strategy fsdp`): every transformer block of the generator is
        sharded over all processes, then the generator's remaining weights; the small critic stays whole on every
        process. Lightning calls this before `configure_optimizers`, so the optimisers hold the sharded weights."""
        mesh = self._device_mesh
        if mesh is None or getattr(self.model, "_marlin_sharded", False):
            return
        from torch.distributed.fsdp import fully_shard

        from ..models.layers import Block

        dp = mesh["data_parallel"]  # the strategy's mesh is (world, 1): data parallel over every process
        for block in [m for m in self.model.modules() if isinstance(m, Block)]:
            fully_shard(block, mesh=dp)
        fully_shard(self.model, mesh=dp)
        self.model._marlin_sharded = True

    @property
    def sharded(self) -> bool:
        return getattr(self.model, "_marlin_sharded", False)

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.cfg
        opt_cls = torch.optim.AdamW if cfg.optimizer == "AdamW" else torch.optim.Adam
        base = self.lrs[0]

        # on a CPU the fused kernel: one pass over all parameters instead of a dozen elementwise ops each (the
        # optimiser step was ~15 % of an iteration of the demo's model; benchmarks/bench_pretrain_step.py)
        fused = {"fused": True} if self.device.type == "cpu" and not self.sharded else {}

        def make(params):
            opt = opt_cls(params, lr=base, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **fused)
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)

        g_opt, g_sched = make([p for p in self.model.parameters() if p.requires_grad])
        d_opt, d_sched = make(list(self.critic.parameters()))
        return [g_opt, d_opt], [g_sched, d_sched]

    def _lr_factor(self, step: int) -> float:
        return lr_at(step, *self.lrs, self.warmup_steps, self.total_steps) / self.lrs[0]

    def _all_reduce_mean(self, tensors) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flat = torch.cat([t.reshape(-1) for t in tensors])
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
            i = 0
            for t in tensors:
                t.copy_(flat[i:i + t.numel()].view_as(t))
                i += t.numel()

    # ---- one iteration ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        acc = self.cfg.trainer.accumulate
        last = batch_idx % acc == acc - 1
        g_opt, d_opt = self.optimizers()
        g_sched, d_sched = self.lr_schedulers()
        x = batch["video"].float().div_(255)  # (B, 3, T, H, W) in [0, 1]
        if self.sharded:  # reduce-scatter the generator's gradients once per iteration, not per micro-batch
            self.model.set_requires_gradient_sync(last)
        ddp = self.trainer.strategy.model
        with ddp.no_sync() if isinstance(ddp, DistributedDataParallel) and not last else contextlib.nullcontext():
            # DDP: all-reduce the generator's gradients once per iteration, on the last micro-batch
            terms = train_iteration(self.model, self.critic, g_opt, d_opt, x, _tokens(batch), self.cfg,
                                    seed=self.cfg.trainer.seed * 1_000_003 + self.iteration, last=last, acc=acc,
                                    backward=self.manual_backward, reduce=self._all_reduce_mean,
                                    features=batch.get("features"))
        terms["mask_fallback"] = batch["mask_fallback"].float().mean()
        for k, v in terms.items():  # mean over the micro-batches of this iteration
            self._micro[k] = self._micro.get(k, 0.0) + v / acc
        if last:
            lr = g_opt.param_groups[0]["lr"]
            g_sched.step()
            if self.cfg.adv_loss:  # without the adversarial term the critic never steps
                d_sched.step()
            self.iteration += 1
            self._record(self._micro, lr)
            self._micro = {}

    # ---- logging --------------------------------------------------------------------------------------
    def _record(self, terms: dict, lr: float) -> None:
        """Average the loss terms over `log_every` iterations; the first iteration is logged on its own."""
        for k, v in terms.items():
            self._window[k] = self._window.get(k, 0.0) + v
        self._window_n += 1
        if self.iteration % self.cfg.trainer.log_every == 0 or self.iteration == self._first_iteration + 1:
            now = time.perf_counter()
            speed = self._window_n * self.global_batch / max(now - self._t_window, 1e-9)  # clips per second
            self._log_row("train", {k: v / self._window_n for k, v in self._window.items()}, lr, speed)
            self._window, self._window_n, self._t_window = {}, 0, now

    def _log_row(self, kind: str, terms: dict, lr: float | None, speed: float | None) -> None:
        names = [k for k in TERMS if k in terms]
        vals = torch.stack([torch.as_tensor(terms[k], dtype=torch.float32, device=self.device) for k in names])
        self._all_reduce_mean([vals])
        vals = vals.tolist()
        metrics = dict(zip(names, vals))
        prefix = "" if kind == "train" else "val_"
        self.log_dict({f"{prefix}{k}": v for k, v in metrics.items()}, on_step=kind == "train",
                      on_epoch=kind != "train", prog_bar=False, sync_dist=kind != "train", batch_size=1)
        if kind == "train":
            self.log("rec", metrics["rec_loss"], prog_bar=True, logger=False, rank_zero_only=True)
            extra = {"lr": lr, "iteration": float(self.iteration)}
            if speed is not None:
                extra["clips_per_s"] = speed
            self.log_dict(extra, on_step=True, rank_zero_only=True, batch_size=1)
        if self.history is not None and self.global_rank == 0:
            row = {"kind": kind, "iteration": self.iteration, "lr": lr, **metrics,
                   "seconds": time.perf_counter() - self._t_fit_start}
            if speed is not None:
                row["clips_per_s"] = speed
            self.history.append(row)

    def on_train_start(self) -> None:
        if self._open_history is not None and self.global_rank == 0 and self.history is None:
            self.history = self._open_history()
        self._t_fit_start = self._t_window = time.perf_counter()
        self._first_iteration = self.iteration
        self._window, self._window_n = {}, 0

    # ---- validation -----------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {}
        self._val_n = 0

    def validation_step(self, batch, batch_idx):
        c, cfg = self.cfg.model, self.cfg
        x = batch["video"].float().div_(255)
        mask = batch["mask"]
        pred, y, rec = forward_losses(self.model, x, _tokens(batch), cfg, batch.get("features"))
        terms = {"rec_loss": rec}
        if self.adversarial:
            d_loss, d_fake, d_real = critic_loss(self.critic, pred, y)
            adv = cfg.adv_weight * -d_fake
            terms.update(d_loss=d_loss, d_fake=d_fake, d_real=d_real, adv_loss=adv, g_loss=rec + adv)
        for k, v in terms.items():
            self._val[k] = self._val.get(k, 0.0) + v.detach()
        self._val_n += 1
        if batch_idx == 0 and self.global_rank == 0 and self.out_dir is not None:
            shown = pred
            if cfg.trainer.norm_target:
                shown = denormalize_predictions(pred, x, mask, c.patch_size, c.tubelet_size)
            path = save_reconstruction(self.out_dir / "reconstructions" / f"step{self.iteration:07d}.png",
                                       x, mask, shown, c)
            self.pictures.append(path)
            exp = getattr(self.logger, "experiment", None)
            if exp is not None and hasattr(exp, "add_image"):
                import cv2

                exp.add_image("reconstruction", cv2.imread(str(path))[..., ::-1].copy(), self.iteration,
                              dataformats="HWC")

    def on_validation_epoch_end(self) -> None:
        if self._val_n:
            self._log_row("val", {k: v / self._val_n for k, v in self._val.items()}, None, None)
        if self.history is not None and self.global_rank == 0 and self.out_dir is not None:
            plot_history(self.history.rows(), self.out_dir / CURVES)  # the run so far, at every validation

    def on_train_end(self) -> None:
        """Gather the generator's full weights, every process taking part (FSDP2: an all-gather of each shard;
        DDP: the replica), as float32 on the CPU of global rank 0 for the final picture and the exports."""
        state = self.trainer.strategy.lightning_module_state_dict()  # FSDP2: full on rank 0, empty elsewhere
        if self.global_rank == 0:
            self.final_state = {k[6:]: v.detach().to("cpu", torch.float32, copy=True)
                                for k, v in state.items() if k.startswith("model.")}

    # ---- checkpoints ------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["marlin_pretrain"] = {"iteration": self.iteration, "config": self.cfg.to_dict(),
                                         "torch_rng": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("marlin_pretrain")
        if state is None:
            raise ValueError("not a `marlin pretrain` checkpoint (no 'marlin_pretrain' entry)")
        self.iteration = int(state["iteration"])
        torch.set_rng_state(state["torch_rng"])

"""`pretrain(...)`: the whole pretraining run (data, module, Lightning trainer, checkpoints, exports)."""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..curves import CURVES, plot_history
from ..errors import MarlinError
from ..precision import Precision
from .config import PretrainConfig, pretrain_config

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """Paths and summary of a finished run (on rank 0; other ranks get the same paths)."""

    out_dir: Path
    exports: dict            # safetensors / encoder_pt / full_pt / yaml -> Path
    checkpoint: Path         # resumable Lightning checkpoint (last.ckpt)
    history_csv: Path
    history: list = field(repr=False)  # rows of history.csv (dicts)
    reconstructions: list    # PNG paths (one per validation, plus final.png)
    mask_picture: Path | None
    iterations: int
    seconds: float
    stopped_by: str
    config: PretrainConfig = field(repr=False)
    precision: str = "32-true"  # the Lightning precision the run used
    curves: Path | None = None  # curves.png: the history drawn (rank 0)


def _ours_to_parts(sd: dict) -> tuple[dict, dict]:
    """Our Lightning checkpoint keys (model.*, critic.*) -> (model sd, critic sd)."""
    return ({k[6:]: v for k, v in sd.items() if k.startswith("model.")},
            {k[7:]: v for k, v in sd.items() if k.startswith("critic.")})


def load_init(module, path) -> None:
    """Initialise the generator (and the critic when present) from a MARLIN / VideoMAE / our checkpoint."""
    from ..checkpoints import load_file, load_into, split_checkpoint
    from ..models.config import PRESETS

    sd, critic_sd, info = split_checkpoint(load_file(path), path)
    if any(k.startswith("model.") for k in sd):
        sd, critic_sd = _ours_to_parts(sd)
    own = module.model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("pos_embedding.emb")]
    load_into(module.model, sd, source=path, strict=False, presets=PRESETS)
    if critic_sd:
        load_into(module.critic, critic_sd, source=path)
    log.warning("initialised from %s (%s): %d tensors loaded, %d left at their initial values%s", path,
                info.get("kind"), len([k for k in sd if k in own]), len(missing),
                f" ({', '.join(missing[:6])}...)" if missing else "")


def _resumed_iteration(path) -> int:
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if "marlin_pretrain" not in ckpt:
        raise ValueError(f"{path}: not a `marlin pretrain` checkpoint (use --init to start from other weights)")
    return int(ckpt["marlin_pretrain"]["iteration"])


def resolve_precision(requested: str | None, on_gpu: bool) -> str:
    """Lightning precision of a run. "auto" (the default on GPUs): bf16-mixed wherever the hardware computes bf16
    natively (`native_bf16`: Ampere and later GPUs; on an AVX512-BF16 CPU ~1.4x the iterations of float32 for
    `demo_cpu`, same loss curve), 32-true elsewhere: V100 / T4 only emulate bf16, and float16 would need loss
    scaling of both the generator's and the critic's steps, which the manual step does not do. None: "auto" on
    GPUs, 32-true on CPUs (CPU results stay those of float32 on every host). ``requested`` was checked with its
    config (`PRETRAIN_REQUESTS`); the name is `Precision.lightning`."""
    if requested is None:
        requested = "auto" if on_gpu else "32"
    return Precision.resolve(requested, "cuda" if on_gpu else "cpu").lightning


def check_launch(nodes: int, devices: int, env=None) -> str:
    """How the processes were started ("torchrun", "slurm" or "local": Lightning starts them) and a check that
    the launcher's process counts agree with --nodes x --devices (a mismatch otherwise hangs at start-up)."""
    import os

    env = os.environ if env is None else env
    world = nodes * devices
    if all(k in env for k in ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")):  # torchrun / elastic
        got = {"WORLD_SIZE": int(env.get("WORLD_SIZE", world)), "LOCAL_WORLD_SIZE": int(env["LOCAL_WORLD_SIZE"])}
        if got != {"WORLD_SIZE": world, "LOCAL_WORLD_SIZE": devices}:
            raise MarlinError(f"torchrun started WORLD_SIZE={got['WORLD_SIZE']} processes, "
                              f"LOCAL_WORLD_SIZE={got['LOCAL_WORLD_SIZE']} per node, but --nodes {nodes} x "
                              f"--devices {devices} asks for {world} ({devices} per node): make them agree")
        return "torchrun"
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        if int(env["SLURM_NTASKS"]) != world:
            raise MarlinError(f"SLURM started SLURM_NTASKS={env['SLURM_NTASKS']} tasks, but --nodes {nodes} x "
                              f"--devices {devices} = {world}: use --ntasks-per-node={devices} with "
                              f"--nodes={nodes} (one task per device)")
        return "slurm"
    return "local"


def make_strategy(name: str, world: int, on_gpu: bool):
    """The Lightning strategy: "auto" for one process; DDP (gloo on CPUs, NCCL on GPUs); or FSDP2 (`fully_shard`
    through Lightning's `ModelParallelStrategy`: `PretrainModule.configure_model` shards every transformer block
    of the generator over all processes and leaves the small critic replicated, its gradients averaged by hand as
    with DDP). FSDP2 hooks the sharded modules instead of wrapping the LightningModule, so the manual generator
    and critic steps run as with DDP (Lightning's FSDP1 strategy runs `training_step` inside the root module's
    forward, where a manual backward fails). Checkpoints hold full (gathered) weights and optimiser states in one
    file written by global rank 0. Lightning detects torchrun / SLURM."""
    backend = None if on_gpu else "gloo"
    if name == "fsdp":
        from lightning.pytorch.strategies import ModelParallelStrategy

        return ModelParallelStrategy(data_parallel_size=world, tensor_parallel_size=1,
                                     save_distributed_checkpoint=False, process_group_backend=backend)
    if world == 1:
        return "auto"
    return generator_ddp(backend)


def generator_ddp(backend: str | None = None):
    """Lightning's DDP over the generator's weights only, with ``find_unused_parameters=False`` (no walk of the
    autograd graph in every backward). The critic's gradients never come from DDP: `critic_update` takes them
    with autograd.grad and averages them by hand, and the generator's adversarial term calls the critic with
    detached weights; so DDP ignores the critic's weights, and every weight it keeps gets a gradient in every
    generator backward. Under gradient accumulation `PretrainModule.training_step` skips DDP's all-reduce on all
    but the last micro-batch (`no_sync`)."""
    from lightning.pytorch.strategies import DDPStrategy
    from torch.nn.parallel import DistributedDataParallel

    class GeneratorDDP(DDPStrategy):
        def _setup_model(self, model):
            critic = self.lightning_module.critic
            ids = {id(t) for t in [*critic.parameters(), *critic.buffers()]}
            ignored = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if id(t) in ids]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
            return super()._setup_model(model)

    return GeneratorDDP(find_unused_parameters=False, process_group_backend=backend)


def pretrain(config, data_dir, out_dir, *, max_steps: int | None = None, max_minutes: float | None = None,
             devices: int = 1, nodes: int = 1, accelerator: str = "auto", precision: str | None = None,
             resume=None, init=None, val_dir=None, progress: bool = True, tensorboard: bool = True,
             mask_picture: bool = True, **settings) -> PretrainResult:
    """Pretrain MARLIN on face clips.

    config: shipped config name ("tiny_cpu", "marlin_vit_small", ...), a YAML path, a dict or a PretrainConfig.
    data_dir: output of `marlin preprocess` / `marlin synth`, a YouTube Faces root, or shards of `marlin shard`
    (their folder, or a brace pattern "shards/shard-{000000..000099}.tar"). `settings` override
    `TrainerSettings` (batch_size, warmup_steps, val_every, ckpt_every, num_workers, seed, strategy, ...).
    devices x nodes processes: launched by Lightning on one machine, or by torchrun / SLURM on several.
    Stops after `max_steps` iterations or `max_minutes` of training, whichever comes first.
    Writes under out_dir: history.csv, tensorboard/, reconstructions/*.png, masks.png, checkpoints/last.ckpt,
    export/NAME.{safetensors,encoder.pt,full.pt,yaml}.
    """
    from ..errors import require

    pl = require("lightning.pytorch", "train", "pretraining")
    require("matplotlib", "train", "pretraining's curves.png")  # drawn at every validation: missing, said now
    from lightning.pytorch.loggers import TensorBoardLogger

    from .callbacks import IterationBar, RunControl
    from .datamodule import PretrainData
    from .export import export_model
    from .history import History, read_history
    from .module import PretrainModule

    cfg = pretrain_config(config, max_steps=max_steps, max_minutes=max_minutes, precision=precision, **settings)
    tr = cfg.trainer
    out = Path(out_dir)
    world = int(devices) * int(nodes)
    global_batch = tr.batch_size * world * tr.accumulate
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    prec = resolve_precision(tr.precision, on_gpu)
    data = PretrainData(data_dir, cfg, val_dir)
    per_epoch = math.ceil(len(data.train_items) / global_batch)
    total = tr.schedule_steps or tr.max_steps or tr.max_epochs * per_epoch
    warmup = tr.warmup_steps if tr.warmup_steps is not None else cfg.warmup_epochs * per_epoch
    warmup = min(warmup, total)
    done = _resumed_iteration(resume) if resume else None
    with torch.random.fork_rng(devices=[]):  # initial weights depend only on the seed (same on every rank)
        torch.manual_seed(tr.seed)
        # history.csv is opened by global rank 0 once the processes know their ranks
        module = PretrainModule(cfg, global_batch, total, warmup, out,
                                history=lambda: History(out / "history.csv", resume_from=done))
    if init and not resume:
        load_init(module, init)

    # TF32 matmuls on GPUs (Ampere on) during training only (`_allow_tf32`); recorded in the exports' metadata
    tf32 = on_gpu and torch.cuda.is_available()
    launcher = check_launch(int(nodes), int(devices))
    if launcher == "local" and int(nodes) > 1:
        raise MarlinError(f"--nodes {nodes}: start the command on every node, with torchrun (--nnodes {nodes}) or "
                          f"srun under SLURM (see docs/scale.md)")
    strategy = make_strategy(tr.strategy, world, on_gpu)
    control = RunControl(out / "checkpoints" / "last.ckpt", tr.accumulate, tr.max_steps, tr.max_minutes,
                         tr.ckpt_every, sync_every=tr.log_every)
    callbacks = [control]
    if progress:
        remaining = None if tr.max_steps is None else max(tr.max_steps - (done or 0), 0) * tr.accumulate
        callbacks.append(IterationBar(remaining))
    logger = TensorBoardLogger(str(out), name="tensorboard", version="") if tensorboard else False
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=nodes, strategy=strategy, precision=prec,
        max_epochs=-1, max_steps=-1, val_check_interval=tr.val_every * tr.accumulate, check_val_every_n_epoch=None,
        limit_val_batches=tr.val_batches, num_sanity_val_steps=0, enable_checkpointing=False,
        use_distributed_sampler=False, logger=logger, callbacks=callbacks, enable_progress_bar=progress,
        log_every_n_steps=max(tr.log_every * tr.accumulate, 1), default_root_dir=str(out),
        enable_model_summary=False, deterministic=False)
    if trainer.is_global_zero:
        from ..config import save_resolved

        save_resolved(cfg, out)  # the resolved settings beside the run's outputs
    t0 = time.perf_counter()
    with _allow_tf32(tf32), _launcher_env():
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True)
    seconds = time.perf_counter() - t0

    pictures = list(module.pictures)
    exports, mask_png = {}, None
    if trainer.is_global_zero:  # the full float32 weights every process helped gather (`on_train_end`)
        model = final_model(module)
        if mask_picture:
            mask_png = _write_mask_picture(data, out / "masks.png")
        pictures.append(_final_picture(model, cfg, data, out / "reconstructions" / "final.png"))
        exports = export_model(model, cfg, out / "export",
                               training={"iterations": module.iteration, "data": str(data_dir),
                                         "stopped_by": control.stopped_by, "precision": prec, "tf32": tf32,
                                         "strategy": type(trainer.strategy).__name__,
                                         "config": cfg.to_dict()})
    hist_path = out / "history.csv"
    history = read_history(hist_path) if hist_path.exists() else []
    curves = plot_history(history, out / CURVES) if trainer.is_global_zero and history else None
    return PretrainResult(out, exports, out / "checkpoints" / "last.ckpt", hist_path, history, pictures, mask_png,
                          module.iteration, seconds, control.stopped_by, cfg, prec, curves)


def _write_mask_picture(data, path: Path) -> Path | None:
    """masks.png: every strategy on a clip of the first readable training item."""
    import numpy as np

    from ..masking import save_mask_picture

    m = data.cfg.model
    ds = data._dataset(data.train_items, data.cfg.trainer.seed)
    for index, item in enumerate(ds.items[:8]):
        try:
            idx, frames = ds.read_clip(index, np.random.default_rng(0))
            parse = item.read_parse(idx)
            _, parse = ds._resize(frames[:0], parse)
        except Exception:
            continue
        return save_mask_picture(path, frames, parse, m, data.cfg.mask.ratio)
    return None


# what Lightning's launcher writes into os.environ for the processes it starts (and torchrun / SLURM set for theirs)
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK", "GROUP_RANK",
              "LOCAL_WORLD_SIZE")


@contextlib.contextmanager
def _launcher_env():
    """The launch variables as they were before training: left behind, a later run in this process (or any process
    it starts) would take itself for a launched child (LOCAL_RANK) and wait for peers that never come."""
    import os

    saved = {k: os.environ.get(k) for k in LAUNCH_ENV}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _allow_tf32(on: bool):
    """TF32 matmuls and convolutions while training on a GPU: pretraining's float32 parts lose nothing that
    matters to the loss. The previous settings come back after, so float32 extraction in the same process
    (`marlin demo`, `marlin ablate`) stays exact float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if on:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def final_model(module):
    """A plain float32 `Marlin` on the CPU holding the generator's weights at the end of the run."""
    from ..models import Marlin

    model = Marlin(module.cfg.model, full_model=True)
    model.load_state_dict({k: v.float() for k, v in module.final_state.items()})
    return model.eval()


@torch.no_grad()
def _final_picture(model, cfg, data, path: Path) -> Path:
    """Reconstruction of the first validation clip by the final model."""
    from ..data.clips import collate
    from .images import save_reconstruction
    from .objective import denormalize_predictions

    c = cfg.model
    ds = data._dataset(data.val_items, cfg.trainer.seed + 1)
    batch = collate([ds[0]])
    x = batch["video"].float().div_(255)
    mask = batch["mask"]
    pred = model(x, mask).float()
    if cfg.trainer.norm_target:
        pred = denormalize_predictions(pred, x, mask, c.patch_size, c.tubelet_size)
    return save_reconstruction(path, x, mask, pred, c)

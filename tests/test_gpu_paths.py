"""The GPU paths of extraction, the linear probe's feature cache, fine-tuning and lip sync, checked on a CPU (issue
30): `--device auto`, the device listed in feature records without keeping a cache from another device, uint8
batches from pinned memory converted on the device, decoding in a prefetch thread, float32 without TF32, and no
per-step host synchronisation in the downstream and lip-sync training loops (same histories as reading every step).

CUDA is mocked where a path only branches on it: `torch.cuda.is_available`, and for the transfer, `pin_memory` /
`Tensor.to(cuda)` recorded and kept on the CPU."""
import json
import os
import threading
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from helpers import pause_in_optimiser, sync_counter, tiny_config
from marlin import Marlin
from marlin.cli import main
from marlin.extract import clips_to_tensor, encode_clips, features_record, prefetch, record_differences
from marlin.video import write_video

CFG = tiny_config()
pytestmark = pytest.mark.lrs2(n_frames=40)  # the lip-sync loops' `store` (conftest)


class FakeCuda:
    """`pin_memory` and `.to(<cuda>)` recorded and kept on the CPU: what travels to the device, and whether the
    float conversion happens after the transfer."""

    def __init__(self, monkeypatch):
        self.transfers, self.pinned_in = [], []
        to, fake = torch.Tensor.to, self

        pinned = set()

        def pin_memory(t):
            fake.pinned_in.append(threading.current_thread().name)
            t = t.clone()
            pinned.add(t.data_ptr())
            return t

        def to_device(t, *args, **kwargs):
            device = args[0] if args else kwargs.get("device")
            if isinstance(device, (str, torch.device)) and torch.device(device).type == "cuda":
                fake.transfers.append((t.dtype, kwargs.get("non_blocking", False)))
                return t
            return to(t, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
        monkeypatch.setattr(torch.Tensor, "is_pinned", lambda t: t.data_ptr() in pinned)
        monkeypatch.setattr(torch.Tensor, "to", to_device)


def _clips(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) for _ in range(n)]


# ---- --device auto -----------------------------------------------------------------------------------------------
def test_extract_device_auto_is_cuda_when_available(monkeypatch):
    from marlin.cli.extract import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device("auto") == torch.device("cuda")
    assert _device("auto", "onnxruntime") == torch.device("cpu")  # the runtimes run on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _device("auto") == torch.device("cpu")


def test_one_device_rule_for_every_command(monkeypatch, tmp_path, capsys):
    """`marlin.devices.resolve_device` reads every device setting (extract, predict, reconstruct, lipsync, the
    downstream runs, ablate): a device torch does not know or a GPU this machine lacks is one line naming the flag,
    before any data loads."""
    from marlin.cli import main
    from marlin.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"^--device cuda:3: this machine has 1 CUDA device\(s\)$"):
        resolve_device("cuda:3", what="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="^device gpu0: not a device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="^device cuda: CUDA is not available here"):
        resolve_device("cuda")
    # lipsync reads its --device before anything loads (it read it once training began, after the data)
    assert main(["lipsync", "infer", "--checkpoint", str(tmp_path / "none.pth"), "--face", str(tmp_path),
                 "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o.mp4"), "--device", "gpu0"]) == 2
    assert capsys.readouterr().err == ("marlin lipsync infer: error: --device gpu0: not a device (auto, cpu, cuda or "
                                       "cuda:K)\n")


def test_extract_defaults_to_auto_and_lists_the_device(tmp_path, capsys):
    """No --device: auto (the CPU here), the same features as --device cpu, and features.json lists the device."""
    torch.manual_seed(0)
    ckpt = tmp_path / "m.safetensors"
    Marlin.from_config(CFG).save(ckpt)
    write_video(tmp_path / "v" / "a.mp4", np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), np.uint8))
    args = [str(tmp_path / "v"), "--checkpoint", str(ckpt)]
    assert main(["extract", *args, "--out", str(tmp_path / "auto")]) == 0
    assert main(["extract", *args, "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "auto" / "a.npy"), np.load(tmp_path / "cpu" / "a.npy"))
    assert json.loads((tmp_path / "auto" / "features.json").read_text())["devices"] == ["cpu"]


# ---- the device in feature records --------------------------------------------------------------------------------
def test_the_device_is_listed_but_not_compared(tmp_path, monkeypatch):
    """Features made on a GPU are used on a CPU and the other way round (float32 agrees to rounding, TF32 is off);
    a folder completed on another device lists both; the cache folder of a run is the same on every device (and
    the one it was before devices were recorded)."""
    from marlin.downstream.features import feature_cache
    from marlin.extract import claim_output

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100")
    on_cpu = features_record({"weights_sha256": "ab"}, 2, 16, False, device="cpu")
    on_gpu = features_record({"weights_sha256": "ab"}, 2, 16, False, device="cuda:0")
    assert on_cpu["devices"] == ["cpu"] and on_gpu["devices"] == ["cuda (NVIDIA H100)"]
    assert record_differences(on_gpu, on_cpu) == record_differences(on_cpu, on_gpu) == []
    assert record_differences(on_gpu, {**on_cpu, "precision": "bf16"})  # what changes features is still compared

    out = tmp_path / "out"
    out.mkdir()
    claim_output(out, on_gpu)
    claim_output(out, on_cpu)
    claim_output(out, on_gpu)
    assert json.loads((out / "features.json").read_text())["devices"] == ["cuda (NVIDIA H100)", "cpu"]

    unrecorded = {k: v for k, v in on_cpu.items() if k != "devices"}
    leaf = feature_cache(tmp_path / "cache", on_gpu)
    assert feature_cache(tmp_path / "cache", on_cpu) == leaf == feature_cache(tmp_path / "cache", unrecorded)


def test_probe_features_on_the_runs_device(tmp_path, monkeypatch):
    """The probe's encoder extracts on the run's device (auto: cuda when available), and the cache's record lists
    the device once it has computed features there."""
    from marlin.downstream.config import RunConfig
    from marlin.downstream.datasets.base import Sample
    from marlin.downstream.features import dataset_features, feature_cache, lp_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert lp_device(RunConfig(dataset="csv", root=".")) == torch.device("cuda")
    assert lp_device(RunConfig(dataset="csv", root=".", device="cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert lp_device(RunConfig(dataset="csv", root=".")) == torch.device("cpu")

    torch.manual_seed(0)
    model = Marlin.from_config(CFG, full_model=False)
    video = tmp_path / "a.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), np.uint8))
    cache = feature_cache(tmp_path / "features", features_record({"weights_sha256": "ab"}, 2, 16, False))
    assert "devices" not in json.loads((cache / "features.json").read_text())
    feats, failures = dataset_features([Sample("a", video, 0)], cache, model, progress=False)
    assert not failures and feats["a"].shape == (1, CFG.encoder_embed_dim)
    assert json.loads((cache / "features.json").read_text())["devices"] == ["cpu"]


# ---- batches: uint8 from pinned memory, converted on the device; decoding in a prefetch thread -------------------
def test_cuda_batches_travel_as_uint8_and_convert_on_the_device(monkeypatch):
    clips = _clips()
    expected = clips_to_tensor(clips)  # the CPU path
    fake = FakeCuda(monkeypatch)
    x = clips_to_tensor(clips, "cuda")
    assert fake.transfers == [(torch.uint8, True)]  # a quarter of float32's bytes, asynchronously
    assert torch.equal(x, expected) and x.dtype == torch.float32

    seen = []
    out = encode_clips(lambda b: seen.append(b.shape[0]) or b.mean((1, 2, 3, 4)), clips, 2, device="cuda")
    assert seen == [2, 2, 1] and fake.transfers[1:] == [(torch.uint8, True)] * 3
    assert fake.pinned_in[1:] == ["marlin-prefetch"] * 3  # stacked and pinned by the decoding thread
    torch.testing.assert_close(out, expected.mean((1, 2, 3, 4)), rtol=0, atol=0)


def test_finetune_batches_travel_as_uint8(monkeypatch, tmp_path):
    """`train_batches` on a CUDA device: the same batches, in the same order, as on the CPU, sent as uint8."""
    from marlin.downstream.datasets.base import Sample
    from marlin.downstream.finetune import train_batches

    class Reader:  # a clip per sample, seeded as ClipReader.random
        def random(self, s, rng):
            return rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)

    samples = [Sample(str(i), tmp_path / f"{i}.mp4", i % 2) for i in range(5)]
    cpu = list(train_batches(samples, Reader(), 2, torch.device("cpu"), 2)(torch.Generator().manual_seed(1)))
    fake = FakeCuda(monkeypatch)
    gpu = list(train_batches(samples, Reader(), 2, torch.device("cuda"), 2)(torch.Generator().manual_seed(1)))
    assert fake.transfers == [(torch.uint8, True)] * 3 and fake.pinned_in == ["marlin-prefetch"] * 3
    assert len(cpu) == len(gpu) == 3
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert torch.equal(xc, xg) and np.array_equal(yc, yg)


def test_prefetch_runs_ahead_keeps_order_raises_and_stops():
    made = threading.Event()

    def items():
        yield 0
        yield 1
        made.set()  # the producer made item 1 while the consumer still holds item 0
        yield 2

    it = prefetch(items())
    assert next(it) == 0 and made.wait(5)
    assert list(it) == [1, 2]

    def failing():
        yield 1
        raise ValueError("bad video")

    with pytest.raises(ValueError, match="bad video"):
        list(prefetch(failing()))

    closed = threading.Event()

    def endless():
        try:
            for i in range(10 ** 9):
                yield i
        finally:
            closed.set()

    it = prefetch(endless())
    assert next(it) == 0
    it.close()  # the consumer stops early: the producer stops and closes its source
    assert closed.wait(5)


def test_float32_is_float32_on_cuda():
    """TF32 (cuDNN allows it by default, for the patch embedding's Conv3d) is off while float32 runs on a GPU,
    and restored after; CPUs are left alone."""
    from marlin.precision import precision_context

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with precision_context("32", "cuda"):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with precision_context("32", "cpu"):
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---- no per-step host reads in the training loops -----------------------------------------------------------------
def test_downstream_epoch_reads_the_losses_once(monkeypatch):
    """`fit`'s training epoch reads its losses from the device once, however many steps; its train_loss is the
    size-weighted mean of the step losses, each read as a float (as when read every step)."""
    from marlin.downstream.tasks import Task
    from marlin.downstream.train import TrainConfig, fit

    task = Task("t", "binary", ("neg", "pos"))
    rng = np.random.default_rng(0)
    data = [(torch.from_numpy(rng.normal(size=(n, 3)).astype(np.float32)), rng.integers(0, 2, n)) for n in (4, 3, 5)]
    steps = []

    class Net(nn.Linear):
        def forward(self, x):
            out = super().forward(x)
            steps.append((out.detach().clone(), len(x)))
            return out

    def run(n_batches):
        torch.manual_seed(0)
        counter, model = sync_counter(), Net(3, 1)
        pause_in_optimiser(monkeypatch, counter, torch.optim.Adam)
        steps.clear()

        def batches(gen):
            with counter:
                yield from data[:n_batches]

        res = fit(model, task, batches, lambda m: (m(data[0][0]), data[0][1]),
                  TrainConfig(lr=0.1, max_epochs=1, batch_size=4), progress=False)
        return counter.ops["_local_scalar_dense"], res.history[0]["train_loss"], steps[:n_batches]

    (n1, _, _), (n3, loss, per_step) = run(1), run(3)
    assert n1 == n3 == 0  # before: one read per step
    loss_fn = task.loss_fn()
    total = sum(float(loss_fn(out, task.target_tensor(y))) * n for (out, n), (_, y) in zip(per_step, data))
    assert loss == total / sum(n for _, n in per_step)


def _loop_reads(monkeypatch, lt):
    """Count `.item()` / `float(tensor)` / `.tolist()` calls of a lip-sync loop, leaving out making the batches
    (host data), the optimisers' steps (host step counters) and saving."""
    from marlin.loop import TrainState

    reads, paused = Counter(), [False]

    def counting(method):
        def read(t, *a):
            if not paused[0]:
                reads["read"] += 1
            return method(t, *a)
        return read

    def pausing(fn):
        def run(*a, **k):
            paused[0] = True
            try:
                return fn(*a, **k)
            finally:
                paused[0] = False
        return run

    for name in ("item", "__float__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    stream = lt.batch_stream

    class Batches:
        def __init__(self, it):
            self.next = pausing(it.__next__)

        def __next__(self):
            return self.next()

    monkeypatch.setattr(lt, "batch_stream", lambda *a, **k: Batches(stream(*a, **k)))
    monkeypatch.setattr(torch.optim.Adam, "step", pausing(torch.optim.Adam.step))
    monkeypatch.setattr(TrainState, "save", pausing(TrainState.save))
    return reads


def test_syncnet_reads_losses_every_log_every_steps(store, tmp_path, monkeypatch):
    """The SyncNet loop reads its losses every LOG_EVERY steps (and at saves), the history as read every step."""
    from marlin.lipsync import train as lt
    from marlin.lipsync.config import SyncTrainConfig
    from marlin.lipsync.syncnet import SyncNetConfig, sync_loss

    cfg = SyncNetConfig(window=5, face_size=32, width=8, stages=3, embed_dim=32)
    losses = []
    monkeypatch.setattr(lt, "sync_loss", lambda *a: losses.append(sync_loss(*a)) or losses[-1])
    monkeypatch.setattr(lt, "LOG_EVERY", 4)
    reads = _loop_reads(monkeypatch, lt)
    history = lt.train_syncnet(store, tmp_path / "s.pt", cfg, SyncTrainConfig(steps=9, batch=2, save_every=100),
                               progress=False)
    assert reads["read"] == 3  # steps 4, 8 and the last (9); before: one per step
    assert history == [float(v.detach()) for v in losses] and len(history) == 9


def test_generator_reads_losses_every_log_every_steps_once_the_sync_term_is_on(store, tmp_path, monkeypatch):
    """The generator loop: every step while Wav2Lip's schedule still waits for the sync term (it decides on the
    last 20 sync losses after each step), every LOG_EVERY steps after; the history as read every step."""
    from marlin.lipsync import train as lt
    from marlin.lipsync.config import GeneratorTrainConfig
    from marlin.lipsync.losses import generator_losses
    from marlin.lipsync.generator import GeneratorConfig
    from marlin.lipsync.syncnet import SyncNet, SyncNetConfig

    torch.manual_seed(0)
    sync = SyncNet(SyncNetConfig(5, 32, 8, 3, 32))
    steps = []
    monkeypatch.setattr(lt, "generator_losses",
                        lambda *a, **k: steps.append(generator_losses(*a, **k)) or steps[-1])
    monkeypatch.setattr(lt, "LOG_EVERY", 5)
    reads = _loop_reads(monkeypatch, lt)
    model = GeneratorConfig("cnn", 5, 32, width=8, audio_dim=32)
    train = GeneratorTrainConfig(steps=31, batch=1, disc_wt=0.07, sync_after=100.0, save_every=100)
    h = lt.train_generator(store, tmp_path / "g.pt", model, train, syncnet=sync, progress=False)
    assert [x["sync_wt"] for x in h] == [0.0] * 20 + [0.03] * 11
    assert reads["read"] == 20 + 3  # 20 steps read one by one, then steps 25, 30 and the last (31)
    assert len(h) == len(steps) == 31
    for rec, losses in zip(h, steps):
        assert {k: rec[k] for k in losses} == {k: float(v.detach()) for k, v in losses.items()}
        assert set(rec) == {*losses, "disc", "sync_wt"}


# ---- DDP: the generator only, no graph walk, one all-reduce per iteration -----------------------------------------
def test_ddp_ignores_the_critic_and_syncs_the_last_micro_batch_only(tmp_path, monkeypatch):
    """`--strategy ddp` wraps the generator's weights only (find_unused_parameters=False: no walk of the graph in
    every backward; the critic's gradients are averaged by hand) and, under gradient accumulation, all-reduces on
    the last micro-batch only (`no_sync` on the others). One gloo process through the real `pretrain()`; the
    2-process runs (tests/test_pretrain_ddp.py, test_pretrain_fsdp.py) check the losses and exports."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from helpers import TINY_PRETRAIN, make_items
    from marlin.train import pretrain, runner
    from marlin.train.module import PretrainModule

    monkeypatch.setattr(runner, "make_strategy", lambda name, world, on_gpu: runner.generator_ddp("gloo"))
    synced, wrapped = [], []
    no_sync, step = DistributedDataParallel.no_sync, PretrainModule.training_step

    def counted_no_sync(self):
        synced[-1] = False
        return no_sync(self)

    def recorded_step(self, batch, batch_idx):
        synced.append(True)
        if not wrapped:
            wrapped.append(self.trainer.strategy.model)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(DistributedDataParallel, "no_sync", counted_no_sync)
    monkeypatch.setattr(PretrainModule, "training_step", recorded_step)
    launch_env = {k: os.environ.get(k) for k in runner.LAUNCH_ENV}
    try:
        pretrain(copy.deepcopy(TINY_PRETRAIN), make_items(tmp_path / "data", n=4), tmp_path / "run", max_steps=2,
                 accumulate=2, progress=False, accelerator="cpu", tensorboard=False, mask_picture=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    # Lightning's launch variables do not outlive the run: a later multi-process run started from this process
    # (the 2-process tests) took itself for a launched child (LOCAL_RANK) and waited for peers until its timeout
    assert {k: os.environ.get(k) for k in runner.LAUNCH_ENV} == launch_env
    ddp = wrapped[0]
    assert isinstance(ddp, DistributedDataParallel) and not ddp.find_unused_parameters
    critic = {n for n, _ in ddp.module.named_parameters() if n.split(".")[0] == "critic"}
    assert critic and critic <= set(ddp.parameters_to_ignore)
    assert not any(n.startswith("model.") for n in ddp.parameters_to_ignore)
    assert synced == [False, True, False, True]  # micro-batches 0 and 2 accumulate locally

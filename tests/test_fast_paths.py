"""The faster paths of CPU pretraining, decoding and probing compute what the plain paths compute."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_PRETRAIN


def test_cpu_bf16_training_attention_runs_in_float32():
    from marlin.models.layers import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v, 0.0, 0.35)
    assert out.dtype == torch.bfloat16  # the autocast dtype goes on downstream
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), scale=0.35)
    assert torch.equal(out, exact.bfloat16())  # computed in float32, rounded once
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # inference keeps the bf16 kernel
        fast = attention(q.detach(), k.detach(), v.detach(), 0.0, 0.35)
    assert torch.equal(fast, F.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), scale=0.35))


def test_pretraining_uses_fused_adamw_on_cpu():
    from marlin.train import pretrain_config
    from marlin.train.module import PretrainModule

    module = PretrainModule(pretrain_config(copy.deepcopy(TINY_PRETRAIN)), global_batch=2, total_steps=4,
                            warmup_steps=0)
    (g_opt, d_opt), _ = module.configure_optimizers()
    assert g_opt.defaults["fused"] and d_opt.defaults["fused"]


def test_iter_frames_equals_pyav_per_frame_conversion(samples_dir):
    import av

    from marlin.video import iter_frames

    path = samples_dir / "cropped01.mp4"
    with av.open(str(path)) as c:
        plain = [f.to_ndarray(format="rgb24") for _, f in zip(range(40), c.decode(video=0))]
    ours = [f for _, f in zip(range(40), iter_frames(path))]
    assert len(ours) == 40 and all(np.array_equal(a, b) for a, b in zip(plain, ours))


def _task(kind, n_labels=3):
    from marlin.downstream.tasks import Task

    return Task("t", kind) if kind == "binary" else Task("t", kind, tuple(str(i) for i in range(n_labels)))


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "binary"])
def test_logistic_in_the_row_span_is_the_full_fit(kind):
    """More features than clips: `train_logistic` fits in the span of the training rows; the optimum (hence the
    predictions on new features, which have components outside that span) is that of the full-space fit."""
    from marlin.downstream.linear import fit_logistic, predict, row_span, train_logistic

    rng = np.random.default_rng(0)
    n, d = 40, 120
    x = rng.standard_normal((n + 30, d)).astype(np.float32)
    w = rng.standard_normal((d, 3))
    logits = x @ w
    y = {"multiclass": logits.argmax(1), "multilabel": (logits > 0).astype(np.int64),
         "binary": (logits[:, 0] > 0).astype(np.int64)}[kind]
    task = _task(kind)
    head, penalty, _, _ = train_logistic(task, x[:n], y[:n], x[n:], y[n:], penalties=(0.1,))
    assert head.weight.shape[1] == d
    full = fit_logistic(task, x[:n], y[:n], 0.1)
    np.testing.assert_allclose(predict(head, x[n:]).numpy(), predict(full, x[n:]).numpy(), atol=2e-3)
    basis = row_span(torch.as_tensor(x[:n]))
    assert basis.shape == (d, n)
    np.testing.assert_allclose((basis.T @ basis).numpy(), np.eye(n), atol=1e-5)
    assert row_span(torch.as_tensor(x[:n, :30])) is None  # fewer features than rows: fitted as they are


def test_ridge_probe_equals_the_primal_solution():
    from marlin.downstream.probes import RIDGE_PENALTIES, ridge_probe
    from marlin.downstream.metrics import compute_metrics

    rng = np.random.default_rng(1)
    task = _task("multiclass", 3)
    xs = [rng.standard_normal((m, 50)).astype(np.float32) for m in (30, 20, 25)]
    ys = [rng.integers(0, 3, m) for m in (30, 20, 25)]
    ours = ridge_probe(task, *zip(xs, ys))
    # the textbook form: an explicit bias column, weights = X^T (X X^T + lam I)^-1 T
    mu, sd = xs[0].mean(0), xs[0].std(0) + 1e-6
    xa, xv, xt = [np.c_[(x - mu) / sd, np.ones(len(x))] for x in xs]
    t = np.eye(3)[ys[0]] * 2.0 - 1
    best = None
    for lam in RIDGE_PENALTIES:
        w = xa.T @ np.linalg.solve(xa @ xa.T + lam * np.eye(len(xa)), t)
        s = compute_metrics("multiclass", task.scores(torch.as_tensor(xv @ w)), ys[1])[task.metric]
        if best is None or s > best[0]:
            best = (s, w)
    np.testing.assert_allclose(ours, task.scores(torch.as_tensor(xt @ best[1])).numpy(), atol=1e-6)

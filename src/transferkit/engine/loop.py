"""The science of one epoch: no I/O, no device names. The accelerator moves batches and scales losses.

loss, score = train_epoch(model, loader, optimizer, scheduler, loss_fn, accelerator, score_fn=task.score)
logits, labels = predict(model, loader, accelerator)
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def train_epoch(
    model,
    loader,
    optimizer,
    scheduler,
    loss_fn,
    accelerator,
    on_batch: Callable[..., None] = lambda n=1, loss=None: None,
    memory_format: torch.memory_format = torch.preserve_format,
    before_epoch: Callable[[], None] = lambda: None,
    score_fn: Callable[[torch.Tensor, torch.Tensor], float] = lambda logits, y: float("nan"),
    after_step: Callable[[], None] = lambda: None,
) -> tuple[float, float]:
    """Mean loss and mean `score_fn` (the task's headline number, e.g. accuracy) over the epoch's batches.
    `after_step` runs after each optimizer step that happened (e.g. a moving average of the weights)."""
    before_epoch()  # e.g. strategies.set_train_mode: frozen BatchNorm stays in eval mode
    total_loss, total_score, seen = 0.0, 0.0, 0
    for x, y in loader:
        x = x.contiguous(memory_format=memory_format)
        # accumulate: with --grad-accum K the optimizer, scheduler and zero_grad act on every K-th batch only (and
        # processes skip the gradient all-reduce in between); with K = 1 every batch steps, as without it
        with accelerator.accumulate(model):
            with accelerator.autocast():
                logits = model(x)
                loss = loss_fn(logits, y)
            accelerator.backward(loss)  # divides the loss by K: K accumulated batches average, like one K x larger
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)  # after the step: before it would wipe the gradients accumulated
            # an accumulating batch's step does nothing, nor does one that fp16's grad scaler skips (inf/nan)
            if accelerator.sync_gradients and not getattr(optimizer, "step_was_skipped", False):
                after_step()
        n = y.shape[0]
        total_loss += loss.item() * n
        total_score += score_fn(logits.detach(), y) * n
        seen += n
        on_batch(1, loss.item())
    return total_loss / max(1, seen), total_score / max(1, seen)


@torch.no_grad()
def predict(
    model,
    loader,
    accelerator,
    memory_format: torch.memory_format = torch.preserve_format,
    on_batch: Callable[..., None] = lambda n=1: None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on the CPU) and labels for every item of `loader`, in order."""
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        with accelerator.autocast():
            logits = model(x.contiguous(memory_format=memory_format))
        logits, y = accelerator.gather_for_metrics((logits.float(), y))
        outs.append(logits.cpu())
        labels.append(y.cpu())
        on_batch(1)
    if not outs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(labels)

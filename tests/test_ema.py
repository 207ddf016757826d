"""diffusion/training.py's EMACallback: the update against its formula, through a real Trainer, and resume."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diffusion.training import EMACallback


def test_the_update_follows_the_formula_with_its_warm_up():
    model = nn.Linear(2, 1)
    ema = EMACallback(decay=0.9)
    args, state = SimpleNamespace(output_dir="/nonexistent"), SimpleNamespace(global_step=0, is_world_process_zero=True)
    ema.on_train_begin(args, state, None, model=model)
    expected = model.weight.detach().clone()
    for step in range(1, 30):
        with torch.no_grad():
            model.weight.add_(1.0)  # a stand-in for an optimizer step
        state.global_step = step
        ema.on_step_end(args, state, None, model=model)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * model.weight.detach()
        assert torch.allclose(ema.shadow["weight"], expected, atol=1e-6)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(10_000) == 0.9
    ema.copy_to(model)
    assert torch.allclose(model.weight, expected)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        EMACallback(decay=1.0)


def test_the_average_is_saved_with_each_checkpoint_and_read_back_on_resume(tmp_path):
    from safetensors.torch import load_file
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(3, 1)

        def forward(self, x, labels):
            return {"loss": ((self.w(x).squeeze(-1) - labels) ** 2).mean()}

    data = [{"x": torch.randn(3), "labels": torch.tensor(1.0)} for _ in range(16)]

    class StopAt(TrainerCallback):
        def __init__(self, step):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= self.step

    def train(stop: int, ema: EMACallback, resume: bool):
        torch.manual_seed(0)
        args = TrainingArguments(str(tmp_path / "run"), max_steps=8, per_device_train_batch_size=4,
                                 save_steps=4, learning_rate=0.1, report_to=[], use_cpu=True, disable_tqdm=True,
                                 logging_strategy="no")
        trainer = Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[ema, StopAt(stop)])
        trainer.train(resume_from_checkpoint=resume or None)
        return ema

    straight = train(8, EMACallback(0.5), resume=False)
    saved = load_file(os.path.join(tmp_path, "run", "checkpoint-8", EMACallback.FILE))
    assert torch.equal(saved["w.weight"], straight.shadow["w.weight"])
    # A run stopped at step 4 (a kill after its checkpoint) and resumed ends with the straight run's average.
    shutil.rmtree(tmp_path / "run")
    train(4, EMACallback(0.5), resume=False)
    resumed = train(8, EMACallback(0.5), resume=True)
    assert torch.allclose(resumed.shadow["w.weight"], straight.shadow["w.weight"], atol=1e-6)


def test_a_checkpoint_with_a_truncated_average_is_not_taken_as_complete(tmp_path):
    """A kill while ema.safetensors is written: diffusion/runs.py's checkpoint_problem names it, so
    --resume sets the checkpoint aside instead of crashing on it."""
    import json

    from safetensors.torch import save_file

    from diffusion.runs import checkpoint_problem

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (ckpt / "config.json").write_text("{}")
    for name in ("model.safetensors", EMACallback.FILE):
        save_file({"w": torch.zeros(64, 64)}, str(ckpt / name))
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({}, ckpt / name)
    assert checkpoint_problem(str(ckpt)) is None
    with open(ckpt / EMACallback.FILE, "r+b") as f:
        f.truncate(os.path.getsize(ckpt / EMACallback.FILE) // 2)
    assert checkpoint_problem(str(ckpt)).startswith("ema.safetensors is unreadable")

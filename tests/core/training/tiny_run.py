"""A tiny deterministic CPU training, run as a subprocess by the resume and distributed tests.

usage: python tiny_run.py RUN_DIR OUT.safetensors [key=value ...]  (keys: TrainConfig fields, plus n, n_eval, dropout)
Under torchrun every rank runs it; rank 0 writes OUT.
"""
import os
import sys

import torch
from safetensors.torch import save_file

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core.training import Trainer, TrainConfig


def main() -> None:
    torch.set_num_threads(1)
    run_dir, out = sys.argv[1], sys.argv[2]
    opts = dict(a.split("=", 1) for a in sys.argv[3:])
    n = int(opts.pop("n", 96))
    dropout = float(opts.pop("dropout", 0.1))
    n_eval = int(opts.pop("n_eval", 32))
    typed = {}
    for k, v in opts.items():
        default = getattr(TrainConfig, k, None)
        typed[k] = v if isinstance(default, str) else (v == "true" if isinstance(default, bool) else
                                                          (int(v) if v.lstrip("-").isdigit() else float(v)))
    torch.manual_seed(0)
    config = MambaConfig(d_model=16, n_layer=2, vocab_size=32, d_state=4, backend="chunked")
    model = MambaForTask(config, build_head("classification", 16, num_labels=2, dropout=dropout))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, 32, (n, 24), generator=g)
    y = (x[:, :4].sum(1) > 64).long()
    data = [{"input_ids": x[i], "labels": y[i]} for i in range(n)]

    def collate(batch):
        return {"input_ids": torch.stack([e["input_ids"] for e in batch]),
                "labels": torch.stack([e["labels"] for e in batch])}

    def metrics(logits, labels):
        return {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}

    cfg = TrainConfig(**{"output_dir": run_dir, "epochs": 4, "batch_size": 8, "eval_every": 10, "save_every": 4,
                         "log_every": 1, "monitor_every": 5, "progress": False, "plots": False,
                         "tensorboard": False, "lr": 3e-3, "warmup_steps": 3, **typed})
    trainer = Trainer(model, cfg, data, data[:n_eval], collate, metrics)
    trainer.train()
    # how many eval rows this rank's model reads in one evaluation (the rows of each forward call)
    rows = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: rows.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    trainer.evaluate(split_across_ranks=True)
    hook.remove()
    with open(os.path.join(run_dir, f"eval_rows_rank{os.environ.get('RANK', '0')}.txt"), "w") as f:
        f.write(" ".join(map(str, rows)))
    weights = trainer.full_state_dict()
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in weights.items()}, out)
    trainer.close()


if __name__ == "__main__":
    main()

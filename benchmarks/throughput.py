"""Training throughput of genae against a minimal hand-written loop and pythae, in one command.

    python benchmarks/throughput.py [--epochs 3] [--skip-pythae] [--json OUT]

Network (the issue's anchor): MLP VAE 784-500-500-16, Bernoulli/BCE, Fashion-MNIST, batch 100,
Adam lr 1e-3. Each contender runs in its own subprocess (so genae's process-wide settings, such
as flushing denormals, do not leak into the baselines), one after the other, and reports
training samples/s (mean over epochs 2.., where the first epoch's warm-up is excluded) and the
test negative ELBO after the same number of epochs. The script exits with status 1 when the
neg-ELBOs disagree by more than --tolerance nats: speed must not cost correctness.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

GENAE = textwrap.dedent(
    """
    import json, sys
    from genae.api import fit
    from genae.data.sources import load_dataset
    epochs, precision = int(sys.argv[1]), sys.argv[2]
    data = load_dataset("fashion-mnist", download=False)
    run = fit("vae", model_config={"hidden": [500, 500], "latent_dim": 16},
              train_config={"epochs": epochs, "batch_size": 100, "lr": 1e-3, "seed": 0,
                            "progress": False, "snapshot_epochs": [], "precision": precision},
              data=data)
    speeds = [h["train_samples_per_s"] for h in run.history]
    print(json.dumps({"speeds": speeds, "neg_elbo": run.history[-1]["neg_elbo"]}))
    """
)

CONV = textwrap.dedent(
    """
    # The image model at 64x64 RGB (convvae, latent 100) on random images: speed only.
    import json, sys
    import torch
    from genae.api import fit
    from genae.data.arrays import from_arrays
    n, precision = int(sys.argv[1]), sys.argv[2]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=g)
    run = fit("convvae", train_config={"epochs": 2, "batch_size": 64, "progress": False,
              "snapshot_epochs": [], "precision": precision},
              data=from_arrays(images, test_fraction=0.05))
    speeds = [h["train_samples_per_s"] for h in run.history]
    print(json.dumps({"speeds": speeds, "neg_elbo": run.history[-1]["neg_elbo"]}))
    """
)

MINIMAL = textwrap.dedent(
    """
    # What a user writes first: eager PyTorch, sigmoid + BCE, default Adam, per-step loss.item().
    import json, sys, time
    import numpy as np, torch, torch.nn.functional as F
    from torch import nn
    import gzip
    import numpy as np
    def read_idx(path):  # no genae import here: importing genae flushes denormals process-wide
        raw = gzip.open(path).read()
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()
    root = "/usr/share/datasets/fashion-mnist/"
    x = torch.from_numpy(read_idx(root + "train-images-idx3-ubyte.gz")).float().div(255).flatten(1)
    xt = torch.from_numpy(read_idx(root + "t10k-images-idx3-ubyte.gz")).float().div(255).flatten(1)
    epochs = int(sys.argv[1])
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU())
    mu_head, lv_head = nn.Linear(500, 16), nn.Linear(500, 16)
    dec = nn.Sequential(nn.Linear(16, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(),
                        nn.Linear(500, 784), nn.Sigmoid())
    params = [*enc.parameters(), *mu_head.parameters(), *lv_head.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)

    def neg_elbo(xb):
        h = enc(xb)
        mu, lv = mu_head(h), lv_head(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * lv)
        rec = F.binary_cross_entropy(dec(z), xb, reduction="none").sum(1)
        return rec + 0.5 * (mu.pow(2) + lv.exp() - 1 - lv).sum(1)

    speeds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for idx in torch.randperm(len(x)).split(100):
            loss = neg_elbo(x[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        speeds.append(len(x) / (time.perf_counter() - start))
    with torch.no_grad():
        test = torch.cat([neg_elbo(b) for b in xt.split(1000)]).mean().item()
    print(json.dumps({"speeds": speeds, "neg_elbo": test}))
    """
)

PYTHAE = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from torch import nn
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
    import gzip
    import numpy as np
    def read_idx(path):  # no genae import here: importing genae flushes denormals process-wide
        raw = gzip.open(path).read()
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()
    root = "/usr/share/datasets/fashion-mnist/"
    load = lambda f: torch.from_numpy(read_idx(root + f)).float().div(255).unsqueeze(1)
    x, xt = load("train-images-idx3-ubyte.gz"), load("t10k-images-idx3-ubyte.gz")
    epochs = int(sys.argv[1])

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 500), nn.ReLU(),
                                      nn.Linear(500, 500), nn.ReLU())
            self.mu, self.lv = nn.Linear(500, 16), nn.Linear(500, 16)
        def forward(self, x):
            h = self.body(x)
            return ModelOutput(embedding=self.mu(h), log_covariance=self.lv(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(16, 500), nn.ReLU(), nn.Linear(500, 500),
                                      nn.ReLU(), nn.Linear(500, 784), nn.Sigmoid())
        def forward(self, z):
            return ModelOutput(reconstruction=self.body(z).view(-1, 1, 28, 28))

    class Clock(TrainingCallback):
        def __init__(self):
            self.marks = []
        def on_epoch_begin(self, training_config, **kw):
            self.start = time.perf_counter()
        def on_train_step_end(self, training_config, **kw):
            self.last = time.perf_counter()
        def on_epoch_end(self, training_config, **kw):
            self.marks.append(len(x) / (self.last - self.start))

    torch.manual_seed(0)
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    trainer_config = BaseTrainerConfig(output_dir="/tmp/pythae-bench", num_epochs=epochs,
                                       learning_rate=1e-3, per_device_train_batch_size=100,
                                       per_device_eval_batch_size=1000, no_cuda=True,
                                       steps_saving=None, seed=0)
    clock = Clock()
    trainer = BaseTrainer(model=model, train_dataset=BaseDataset(x, torch.zeros(len(x))),
                          eval_dataset=None,
                          training_config=trainer_config, callbacks=[clock])
    trainer.train()
    model.eval()
    with torch.no_grad():
        total = sum(model({"data": b}).loss.item() * len(b) for b in xt.split(1000))
    print(json.dumps({"speeds": clock.marks, "neg_elbo": total / len(xt)}))
    """
)


def run(name: str, code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark: {name} failed:\n{result.stderr[-3000:]}")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    steady = out["speeds"][1:] or out["speeds"]
    out["samples_per_s"] = sum(steady) / len(steady)
    print(
        f"{name:<16} {out['samples_per_s']:>10,.0f} samples/s   test neg_elbo "
        f"{out['neg_elbo']:.2f}",
        flush=True,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-pythae", action="store_true")
    parser.add_argument(
        "--conv-images",
        type=int,
        default=1000,
        help="random 64x64 images for the convvae figure (0: skip it)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="largest allowed neg-ELBO gap (nats) between contenders",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    epochs = str(args.epochs)
    results = {
        "genae fp32": run("genae fp32", GENAE, epochs, "fp32"),
        "genae bf16": run("genae bf16", GENAE, epochs, "bf16"),
        "minimal loop": run("minimal loop", MINIMAL, epochs),
    }
    if not args.skip_pythae:
        results["pythae 0.1.2"] = run("pythae 0.1.2", PYTHAE, epochs)
    conv = {}
    if args.conv_images:
        for precision in ("fp32", "bf16"):
            conv[precision] = run(f"convvae64 {precision}", CONV, str(args.conv_images), precision)
    base = results["genae fp32"]["samples_per_s"]
    print()
    for name, out in results.items():
        if name != "genae fp32":
            print(f"genae fp32 / {name:<14} {base / out['samples_per_s']:.2f}x")
    if conv:
        ratio = conv["fp32"]["samples_per_s"] / conv["bf16"]["samples_per_s"]
        print(f"convvae64 fp32 / bf16          {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {**results, **{f"convvae64 {k}": v for k, v in conv.items()}}, handle, indent=2
            )
    reference = results["genae fp32"]["neg_elbo"]
    worst = max(abs(out["neg_elbo"] - reference) for out in results.values())
    if worst > args.tolerance:
        print(f"FAIL: test neg-ELBOs differ by {worst:.2f} nats (> {args.tolerance})")
        return 1
    print(f"test neg-ELBOs agree within {worst:.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())

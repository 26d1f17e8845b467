"""Train a digit model from scratch, or fine-tune one on user corrections.

    python train.py --data-dir ../shared/data                 # the bundled model's recipe
    python train.py --preset fast --out /tmp/fast.safetensors # 99.0+ % in about half a minute on 2 CPU cores
    python train.py --dry-run --out /tmp/dry.safetensors      # one batch, for tests and CI
    python train.py --dataset emnist-letters --out checkpoints/letters.safetensors   # any EMNIST split
    python train.py --init-from checkpoints/mnist-cnn.safetensors --corrections corrections \
        --out checkpoints/finetuned.safetensors               # fine-tune on saved corrections
    python train.py --verifier --data-dir ../shared/data     # the Number mode's digit verifier
    python train.py --combine a.safetensors b.safetensors --out ens.safetensors  # an ensemble of trained nets

Speed tricks (each one line):
- the whole dataset is one uint8 tensor on the device; batches are index gathers, no DataLoader;
- augmentation runs on whole batches as tensor ops (hwr/augment.py), no per-image PIL;
- channels_last memory format: ~2.5x faster conv training on this CPU (measured: 0.27 s vs 0.69 s a batch of 256);
- evaluation under torch.inference_mode with large batches;
- `--preset fast`: a 4x smaller net, one OneCycle epoch, batch 256, no augmentation (bench/time_to_accuracy.py);
- `--compile` (torch.compile) and `--bf16` (bfloat16 autocast) for GPUs; both are opt-in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from hwr.augment import (
    DEFAULT_FLAG_ANGLE,
    DEFAULT_FLAG_FROM_STEM,
    DEFAULT_FLAG_LENGTH,
    DEFAULT_FLAG_PROB,
    DEFAULT_FLAG_RECENTRE,
    augment_for,
)
from hwr.checkpoint import combine_checkpoints, make_metadata, save_checkpoint
from hwr.data import DATASETS, MNIST_NORMALIZATION, dataset_of, default_data_dir, load_dataset, normalization_of
from hwr.emnist import TEST_LETTERS_TRAIN_FRACTION
from hwr.evaluate import evaluate
from hwr.finetune import FinetuneConfig, finetune
from hwr.model import ModelConfig, build_model, count_parameters
from hwr.preprocess import recipe_metadata
from hwr.training import pick_device, seed_everything, train_one_epoch
from hwr.verifier import DEFAULT_VERIFIER_CHECKPOINT as VERIFIER_OUT_DEFAULT
from hwr.verifier import RECIPE as VERIFIER_RECIPE
from hwr.verifier import VerifierTraining, describe_metrics, measure_verifier, train_bundled_verifier


OUT_DEFAULT = "checkpoints/mnist-cnn.safetensors"
BATCH_SIZE_DEFAULT = 128  # the bundled model's recipe (the fast preset uses 256)
# What a checkpoint says about its data when it was not trained on an official training split.
DATA_NOTES = {
    "emnist-byclass-test-letters": (
        "Trained on the letters of the EMNIST byclass TEST split (case folded into 26 classes a-z), "
        "because the official training splits were not reachable offline: the first "
        f"{TEST_LETTERS_TRAIN_FRACTION:.0%} of those letters in file order trained it, the last "
        f"{1 - TEST_LETTERS_TRAIN_FRACTION:.0%} are its validation set. Not comparable with results on "
        "the official EMNIST Letters test split. On a machine with internet, "
        "`python train.py --dataset emnist-letters` trains on the official split."
    ),
}


def recipe_for(dataset: str) -> str:
    """The preprocessing recipe whose framing matches a dataset's images: MNIST's or EMNIST's."""
    return "emnist" if dataset.startswith("emnist-") else "mnist"


def normalization_for(dataset: str, train_images: torch.Tensor) -> dict[str, float]:
    """MNIST's published mean/std for MNIST; for other data, measured on its training images."""
    return dict(MNIST_NORMALIZATION) if dataset == "mnist" else normalization_of(train_images)

# Named recipes. A preset sets defaults; flags given on the command line still win.
# "bundled" is how checkpoints/mnist-cnn.safetensors was made; "fast" is the time-to-99 % recipe
# measured in bench/time_to_accuracy.py (one OneCycle epoch of a 73k-parameter net, no augmentation).
PRESETS: dict[str, dict] = {
    "bundled": {},
    "fast": {"widths": "16,32,64", "dropout": 0.0, "epochs": 1, "batch_size": 256, "lr": 0.01,
             "no_augment": True, "label_smoothing": 0.0},
}


def parse_range(text: str) -> tuple[float, float]:
    """"15,50" -> (15.0, 50.0)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 15,50, not {text!r}") from None
    return lo, hi


def format_range(values: tuple[float, float]) -> str:
    """(10.0, 45.0) -> "10,45": a range as parse_range reads it."""
    return ",".join(f"{v:g}" for v in values)


def parse_widths(text: str) -> tuple[int, int, int]:
    """"32,64,128" -> (32, 64, 128): the cnn's channels at 28, 14 and 7 px."""
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be three integers like 32,64,128, not {text!r}") from None
    if len(widths) != 3 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be three positive integers like 32,64,128, not {text!r}")
    return widths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bundled", choices=sorted(PRESETS),
                    help="named recipe whose values become the defaults below: bundled (the bundled model's) or "
                         "fast (fast = --widths 16,32,64 --dropout 0 --epochs 1 --batch-size 256 --lr 0.01 "
                         "--no-augment --label-smoothing 0) (default: bundled)")
    ap.add_argument("--dataset", default="mnist", choices=DATASETS, help="training data (default: mnist)")
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="data root (default: $HWR_DATA_DIR, else ./data; downloads if absent)")
    ap.add_argument("--arch", default="cnn", choices=["cnn", "seed"], help="model architecture (default: cnn)")
    ap.add_argument("--widths", type=parse_widths, default=ModelConfig.widths, help="cnn channels at 28, 14 and 7 px (default: 32,64,128)")
    ap.add_argument("--dropout", type=float, default=ModelConfig.dropout, help=f"cnn dropout before the classifier (default: {ModelConfig.dropout})")
    ap.add_argument("--deslant", action="store_true",
                    help="start the model with a parameter-free layer that shears each input upright "
                         "(hwr.model.deslant); see BENCHMARKS.md for what it does to real drawings (default: off)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: 15; 3 when fine-tuning)")
    ap.add_argument("--batch-size", type=int, default=None, help=f"batch size (default: {BATCH_SIZE_DEFAULT}; {VerifierTraining.batch_size} with --verifier)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate of the OneCycle schedule (default: 3e-3; 2e-4 when fine-tuning)")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="AdamW weight decay (default: 5e-4)")
    ap.add_argument("--label-smoothing", type=float, default=0.05, help="cross-entropy label smoothing (default: 0.05)")
    ap.add_argument("--no-augment", action="store_true", help="turn off augmentation (default: augment)")
    ap.add_argument("--flag-prob", type=float, default=DEFAULT_FLAG_PROB, help=f"share of 1s given a European-style flag in augmentation (default: {DEFAULT_FLAG_PROB})")
    ap.add_argument("--flag-angle", type=parse_range, default=DEFAULT_FLAG_ANGLE, metavar="LO,HI",
                    help="flag direction range in degrees, from the 1's stem (or from the horizontal with "
                         "--no-flag-from-stem) (default: %s)" % format_range(DEFAULT_FLAG_ANGLE))
    ap.add_argument("--flag-length", type=parse_range, default=DEFAULT_FLAG_LENGTH, metavar="LO,HI",
                    help="flag length range as a share of the 1's height (default: %s)" % format_range(DEFAULT_FLAG_LENGTH))
    ap.add_argument("--flag-from-stem", action=argparse.BooleanOptionalAction, default=DEFAULT_FLAG_FROM_STEM,
                    help="measure --flag-angle from the 1's stem instead of from the horizontal (default: %(default)s)")
    ap.add_argument("--flag-recentre", action=argparse.BooleanOptionalAction, default=DEFAULT_FLAG_RECENTRE,
                    help="move each flagged 1's centre of mass back to the field's centre (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; same seed, same model on the same machine (default: 0)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto = cuda if available)")
    ap.add_argument("--stop-at", type=float, default=None, metavar="ACC", help="stop once test accuracy reaches ACC, e.g. 0.99; single process only (default: train every epoch)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model: pays a warm-up, then faster steps, mostly on GPUs (default: off)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass; meant for GPUs, slow on most CPUs (default: off)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = torch's default (default: 0)")
    ap.add_argument("--out", default=None, help=f"checkpoint to write (default: {OUT_DEFAULT} for mnist, else checkpoints/<dataset>-<arch>.safetensors)")
    ap.add_argument("--name", default=None, help="model name in the metadata (default: the --out file's stem)")
    ap.add_argument("--dry-run", action="store_true", help="one training batch and one small evaluation batch, then save (default: off)")
    ap.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars (default: shown)")
    vr = ap.add_argument_group("the digit verifier for reading numbers (hwr/verifier.py)")
    vr.add_argument("--verifier", action="store_true",
                    help="train the digit verifier instead of a digit model; --epochs, --lr, --batch-size, --seed apply (default: off)")
    vr.add_argument("--verifier-numbers", type=int, default=5000,
                    help="numbers drawn from pendigits writers 1-12 to train it on (default: 5000)")
    vr.add_argument("--verifier-intact", action=argparse.BooleanOptionalAction, default=VerifierTraining.intact,
                    help="targets that also require a candidate to leave the other digits whole "
                         "(hwr.verifier.whole_targets; the bundled verifier averages one of each) (default: %(default)s)")
    en = ap.add_argument_group("ensembles (hwr.model.Ensemble)")
    en.add_argument("--combine", nargs="+", metavar="CKPT",
                    help="combine these trained checkpoints (one config, e.g. other --seed) into one ensemble that "
                         "averages their probabilities, measure it on the test set and save it to --out; "
                         "nothing is trained (default: off)")
    ft = ap.add_argument_group("fine-tuning on corrections (hwr/finetune.py)")
    ft.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint and fine-tune (default: train from scratch)")
    ft.add_argument("--corrections", metavar="DIR", help="corrections folder to fine-tune on (default: $HWR_CORRECTIONS_DIR, else ./corrections)")
    ft.add_argument("--oversample", type=int, default=FinetuneConfig.oversample, help=f"times each correction is seen an epoch (default: {FinetuneConfig.oversample})")
    ft.add_argument("--replay-ratio", type=float, default=FinetuneConfig.replay_ratio, help=f"original training images mixed in per correction image (default: {FinetuneConfig.replay_ratio})")
    ft.add_argument("--holdout-frac", type=float, default=FinetuneConfig.holdout_frac, help=f"share of corrections held out to measure (default: {FinetuneConfig.holdout_frac})")
    ft.add_argument("--max-mnist-drop", type=float, default=FinetuneConfig.max_mnist_drop, help=f"gate: largest allowed fall of MNIST test accuracy in points (default: {FinetuneConfig.max_mnist_drop})")
    ft.add_argument("--force", action="store_true", help="write the checkpoint even if the gate fails (default: off)")
    preset = ap.parse_known_args(argv)[0].preset
    ap.set_defaults(**{k: parse_widths(v) if k == "widths" else v for k, v in PRESETS[preset].items()})
    args = ap.parse_args(argv)
    fine = args.init_from is not None
    if args.combine is not None:
        if fine or args.verifier:
            ap.error("--combine makes an ensemble of trained checkpoints; it cannot be combined with --init-from or --verifier")
        if args.out is None:
            ap.error("--combine needs --out")
        return args
    if args.verifier:
        if fine:
            ap.error("--verifier trains a new verifier; it cannot be combined with --init-from")
        args.out = args.out or str(VERIFIER_OUT_DEFAULT)
        args.epochs = args.epochs or VerifierTraining.epochs
        args.lr = args.lr or VerifierTraining.lr
        args.batch_size = args.batch_size or VerifierTraining.batch_size
        return args
    args.batch_size = args.batch_size or BATCH_SIZE_DEFAULT
    if args.out is None:  # never overwrite the bundled digit model with another dataset's model
        args.out = OUT_DEFAULT if args.dataset == "mnist" else f"checkpoints/{args.dataset}-{args.arch}.safetensors"
    if args.epochs is None:
        args.epochs = FinetuneConfig.epochs if fine else 15
    if args.lr is None:
        args.lr = FinetuneConfig.lr if fine else 3e-3
    return args


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on GPUs, gloo on the CPU).

    Returns (rank, world_size, this rank's device); (0, 1, device) when run plainly.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_finetune(args: argparse.Namespace, device: torch.device) -> int:
    """--init-from: fine-tune on corrections, print before/after, save only if the gate passes (or --force)."""
    corrections = args.corrections or os.environ.get("HWR_CORRECTIONS_DIR") or "corrections"
    cfg = FinetuneConfig(
        epochs=1 if args.dry_run else args.epochs, lr=args.lr, batch_size=args.batch_size,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, oversample=args.oversample,
        replay_ratio=args.replay_ratio, holdout_frac=args.holdout_frac, max_mnist_drop=args.max_mnist_drop,
        seed=args.seed,
    )
    try:
        result = finetune(args.init_from, corrections, args.data_dir, cfg, device,
                          progress=None if args.no_progress else lambda f, msg: print(f"[{100 * f:3.0f} %] {msg}", flush=True))
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.2f} %"
    print(f"corrections: {result.n_corrections} ({result.n_train} to train, {result.n_holdout} held out); {result.seconds:.1f} s", flush=True)
    for key in ("holdout_accuracy", "mnist_accuracy"):
        print(f"{key:17s} before {fmt(result.before[key])}  after {fmt(result.after[key])}", flush=True)
    print(result.reason, flush=True)
    if not result.gate_passed and not args.force:
        print("gate failed: checkpoint NOT written (use --force to write it anyway)", flush=True)
        return 3
    out = Path(args.out)
    meta = dict(result.metadata, name=args.name or out.stem)
    meta["training"]["command"] = "python train.py " + " ".join(sys.argv[1:])
    save_checkpoint(result.model, meta, out)
    print(f"saved {out}", flush=True)
    return 0


def run_verifier(args: argparse.Namespace, device: torch.device) -> int:
    """--verifier: train the Number mode's digit verifier on numbers drawn from pendigits digits."""
    from hwr.pendigits import load_pendigits

    try:
        digits = load_pendigits(args.data_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    cfg = VerifierTraining(epochs=1 if args.dry_run else args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           intact=args.verifier_intact)
    n_numbers = 8 if args.dry_run else args.verifier_numbers
    path = train_bundled_verifier(digits, args.out, n_numbers, cfg, device, dry_run=args.dry_run,
                                  say=lambda msg: print(msg, flush=True))
    print(f"saved {path}")
    return 0


def run_combine(args: argparse.Namespace, device: torch.device) -> int:
    """--combine: one ensemble checkpoint from several trained ones, measured on their test set."""
    out = Path(args.out)
    try:
        model, meta = combine_checkpoints(args.combine, args.name or out.stem)
        model = model.to(device)
        if meta["preprocess"].get("recipe") == VERIFIER_RECIPE:  # digit verifiers: measured as `--verifier` does
            from hwr.pendigits import load_pendigits

            meta["metrics"] = measure_verifier(model, load_pendigits(args.data_dir), n_numbers=2 if args.dry_run else 300)
            measured = describe_metrics(meta["metrics"])
        else:
            test = load_dataset(dataset_of(meta["training"].get("dataset") or "mnist-train"), args.data_dir, train=False)
            if args.dry_run:
                test.images, test.labels = test.images[:256], test.labels[:256]
            metrics = evaluate(model, test.images, test.labels, test.classes, meta["normalization"], device=device)
            meta["metrics"] = {test.name: {k: metrics[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "n")}}
            measured = f"{test.name} accuracy {metrics['accuracy']:.4f}"
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    meta["training"]["command"] = "python train.py " + " ".join(sys.argv[1:])
    save_checkpoint(model, meta, out)
    print(f"saved {out}: {len(args.combine)} members, {measured}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.combine is not None:
        return run_combine(args, device)
    if args.verifier:
        return run_verifier(args, device)
    if args.init_from:
        if args.out == OUT_DEFAULT:
            print(f"error: fine-tuning would overwrite the bundled model; pass --out", file=sys.stderr)
            return 2
        return run_finetune(args, device)
    generator = seed_everything(args.seed)

    rank, world_size, device = init_distributed(device)
    say = print if rank == 0 else (lambda *a, **k: None)  # only rank 0 prints, logs and writes
    try:
        train = load_dataset(args.dataset, args.data_dir, train=True)
        test = load_dataset(args.dataset, args.data_dir, train=False)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    norm = normalization_for(args.dataset, train.images)
    images, labels = train.images.to(device), train.labels.to(device)  # (N, 28, 28) uint8, (N,)
    if args.dry_run:
        test.images, test.labels = test.images[:256], test.labels[:256]

    config = ModelConfig(arch=args.arch, num_classes=len(train.classes), widths=tuple(args.widths), dropout=args.dropout, deslant=args.deslant)
    model = build_model(config).to(device).to(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model  # shares parameters with `model`, which is saved
    if world_size > 1:  # gradients are averaged across ranks by DDP's all-reduce
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    epochs = 1 if args.dry_run else args.epochs
    steps_per_epoch = 1 if args.dry_run else len(labels) // world_size // args.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    augment = None if args.no_augment else augment_for(train.classes, args.flag_prob, args.flag_angle,
                                                         args.flag_length, args.flag_recentre, args.flag_from_stem)
    say(
        f"training {args.arch} ({count_parameters(model):,} parameters) on {train.name} "
        f"({len(labels):,} images) for {epochs} epoch(s) on {device}, {torch.get_num_threads()} threads, {world_size} process(es)",
        flush=True,
    )

    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        stats = train_one_epoch(
            net, optimizer, scheduler, images, labels,
            batch_size=args.batch_size, norm=norm, augment=augment, label_smoothing=args.label_smoothing,
            generator=generator, max_batches=1 if args.dry_run else None,
            progress=None if args.no_progress or rank else f"epoch {epoch}/{epochs}",
            rank=rank, world_size=world_size, bf16=args.bf16,
        )
        if rank != 0:  # the other ranks wait for rank 0 at the next all-reduce
            continue
        metrics = evaluate(model, test.images, test.labels, test.classes, norm, device=device)
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
                        "test_accuracy": metrics["accuracy"], "seconds": round(elapsed, 1)})
        say(f"epoch {epoch:3d}  train loss {stats['loss']:.4f} acc {stats['accuracy']:.4f}  "
              f"{test.name} acc {metrics['accuracy']:.4f}  ({elapsed:.0f} s)", flush=True)
        if args.stop_at is not None and metrics["accuracy"] >= args.stop_at and world_size == 1:
            say(f"reached {args.stop_at:.4f} after epoch {epoch}: stopping (--stop-at)", flush=True)
            break

    if rank != 0:
        shutdown_distributed()
        return 0
    out = Path(args.out)
    name = args.name or out.stem
    meta = make_metadata(
        name=name,
        config=config,
        classes=train.classes,
        normalization=norm,
        preprocess=recipe_metadata(recipe_for(args.dataset)),
        training={
            "dataset": train.name, "test_set": test.name, "n_train": len(labels), "epochs": epochs,
            "epochs_run": max(len(history), 1), "batch_size": args.batch_size,
            "preset": args.preset, "compile": args.compile, "bf16": args.bf16,
            "optimizer": "AdamW", "lr": args.lr, "weight_decay": args.weight_decay, "schedule": "OneCycle",
            "label_smoothing": args.label_smoothing, "augment": None if augment is None else vars(augment),
            "seed": args.seed, "dry_run": args.dry_run, "device": str(device), "world_size": world_size,
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
            "seconds": round(time.perf_counter() - start, 1),
            "command": "python train.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "history": history,
        },
        metrics={f"{test.name}": {k: metrics[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "n")}},
        parent=None,
        **({"data_note": DATA_NOTES[args.dataset]} if args.dataset in DATA_NOTES else {}),
    )
    save_checkpoint(model, meta, out)
    print(f"saved {out} (test accuracy {metrics['accuracy']:.4f})", flush=True)
    print(json.dumps({"checkpoint": str(out), "test_accuracy": metrics["accuracy"]}), flush=True)
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())

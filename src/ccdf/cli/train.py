"""The training commands: ``ccdf train`` (a diffusion prior), ``ccdf train-restorer`` (the
feed-forward start), and the models of the super-resolution comparison (Table 2 of Chung, Sim & Ye, CVPR 2022)
and the feature network of its FID: ``train-sr3``, ``train-esrgan``, ``train-classifier``.

Library modules are imported inside the commands: ``set_threads`` runs before torch is."""

from __future__ import annotations

from .args import CLIError, add_task_args, add_threads, int_list, task_of


def _config(a, **kw):
    from ..models.train import TrainConfig

    if not 0 <= a.lr_decay <= a.steps:
        raise CLIError(f"--lr-decay must be between 0 and --steps ({a.steps}), got {a.lr_decay}")
    return TrainConfig(
        data=a.data, image_size=a.image_size, channels=getattr(a, "channels", 1),
        block_out_channels=a.channels_mult, layers_per_block=getattr(a, "layers", 1),
        batch_size=a.batch_size, lr=a.lr, lr_decay=a.lr_decay, steps=a.steps, ema_decay=a.ema,
        hflip=a.hflip, seed=a.seed, checkpoint_every=a.checkpoint_every, trained_on=a.data,
        extra={"command": "ccdf " + " ".join(a.argv)}, **kw)


def cmd_train(a) -> int:
    from .. import datasets
    from ..models.train import train

    cfg = _config(a, schedule=a.schedule, sigma_max=a.sigma_max, attention=a.attention,
                  patch=a.patch, complex=a.complex, init_from=a.init_from or "")
    if a.complex and not a.patch:
        raise CLIError("--complex trains on patches: give --patch P (e.g. 64)")
    if a.patch:
        from ..patches import PatchSampler

        if a.channels != (2 if a.complex else 1) and not a.complex:
            raise CLIError("patch training without --complex is not supported; add --complex")
        cfg.channels, cfg.image_size = 2, a.patch
        data = PatchSampler(datasets.native_set(a.data), patch=a.patch)
        out = train(cfg, data, a.out, resume=not a.restart, progress=not a.no_progress)
        print(f"model written to {out}")
        return 0
    data = datasets.load(a.data, size=a.image_size, channels=a.channels)
    if data.shape[-1] != a.image_size:
        raise CLIError(f"data is {data.shape[-1]}x{data.shape[-1]} but --image-size is {a.image_size}")
    out = train(cfg, data, a.out, resume=not a.restart, progress=not a.no_progress)
    print(f"model written to {out}")
    return 0


def cmd_train_restorer(a) -> int:
    from .. import datasets
    from ..models.restorer import train_restorer

    task = task_of(a)
    cfg = _config(a)
    if a.any_mask:
        from ..models.mri_restorer import train_mri_restorer
        from ..patches import PatchSampler

        if task.name != "mri":
            raise CLIError("--any-mask trains the unrolled MRI start: --task mri")
        if a.sigma_y:
            raise CLIError("--sigma-y is not supported with --any-mask")
        cfg.channels = 2
        sizes = a.sizes
        out = train_mri_restorer(cfg, PatchSampler(datasets.native_set(a.data), patch=max(sizes)),
                                 a.out, sizes=sizes, iters=a.iters, resume=not a.restart,
                                 progress=not a.no_progress)
        print(f"MRI restoration network (any mask) written to {out}")
        return 0
    data = datasets.load(a.data, size=a.image_size, channels=a.channels)
    held = datasets.load(a.heldout, size=a.image_size, channels=a.channels) if a.heldout else None
    out = train_restorer(cfg, task.as_dict(), data, a.out, held, resume=not a.restart,
                         progress=not a.no_progress, sigma_y=a.sigma_y)
    print(f"restoration network written to {out}")
    return 0


def _sr_task(a) -> dict:
    if a.task not in (None, "sr"):
        raise CLIError("this model is for super-resolution: --task sr")
    a.task = "sr"
    return task_of(a).as_dict()


def cmd_train_sr3(a) -> int:
    from .. import datasets
    from ..models.sr3 import train_sr3

    task = _sr_task(a)
    cfg = _config(a)
    data = datasets.load(a.data, size=a.image_size)
    out = train_sr3(cfg, task, data, a.out, resume=not a.restart, progress=not a.no_progress)
    print(f"SR3-style model written to {out}")
    return 0


def cmd_train_esrgan(a) -> int:
    from .. import datasets
    from ..models.esrgan import train_esrgan

    cfg = _config(a)
    data = datasets.load(a.data, size=a.image_size)
    held = datasets.load(a.heldout, size=a.image_size) if a.heldout else None
    out = train_esrgan(cfg, a.start, data, a.out, held, adv_weight=a.adv_weight,
                       resume=not a.restart, progress=not a.no_progress)
    print(f"ESRGAN-style network written to {out}")
    return 0


def cmd_train_classifier(a) -> int:
    from .. import datasets
    from ..fid import train_classifier

    cfg = _config(a)
    x, lab = datasets.fashion_mnist("train"), datasets.fashion_mnist_labels("train")
    test = (datasets.fashion_mnist("test"), datasets.fashion_mnist_labels("test"))
    out = train_classifier(cfg, x, lab, a.out, test, resume=not a.restart,
                           progress=not a.no_progress)
    print(f"feature classifier written to {out}")
    return 0


def _common(p, lr: float, steps: int, ema: float, widths=(32, 64, 64), batch: int = 32) -> None:
    p.add_argument("--out", required=True, help="output folder (model + checkpoint + log)")
    p.add_argument("--image-size", type=int, default=32, help="training image size (square)")
    p.add_argument("--channels-mult", type=int_list, default=widths, help="UNet block widths")
    p.add_argument("--batch-size", type=int, default=batch, help="images per training step")
    p.add_argument("--lr", type=float, default=lr, help="AdamW learning rate")
    p.add_argument("--steps", type=int, default=steps, help="training steps")
    p.add_argument("--lr-decay", type=int, default=0, help="cosine decay of the learning rate "
                   "to 0 over the last LR_DECAY steps (0: constant after warm-up; a resumed run "
                   "may add it to anneal toward its --steps)")
    p.add_argument("--ema", type=float, default=ema, help="EMA decay of the saved weights")
    p.add_argument("--hflip", action="store_true", help="random horizontal flips")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batches")
    p.add_argument("--checkpoint-every", type=int, default=250,
                   help="steps between checkpoints (a rerun resumes from the last one)")
    add_threads(p)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a diffusion prior (DDPM eps-loss or VE score matching)")
    t.add_argument("--data", required=True,
                   help="fashion-mnist[:train], mni152[:train], brains, or a folder/.nii/.npy/.h5")
    t.add_argument("--schedule", choices=["vp", "ve"], default="vp",
                   help="vp (DDPM, eps prediction) or ve (SMLD, score matching)")
    t.add_argument("--sigma-max", type=float, default=50.0, help="ve: the largest noise level")
    t.add_argument("--channels", type=int, default=1, help="image channels (1 gray, 3 RGB)")
    t.add_argument("--layers", type=int, default=1, help="ResNet layers per UNet block")
    t.add_argument("--attention", action="store_true", help="self-attention in the lowest blocks")
    t.add_argument("--patch", type=int, default=0,
                   help="train on random PxP patches of native-resolution slices (a prior for "
                        "any image size); data: brains-native or NIfTI files/folder")
    t.add_argument("--complex", action="store_true",
                   help="complex-image prior: 2 channels (real, imaginary), smooth random phase")
    t.add_argument("--init-from", default=None,
                   help="a ccdf model folder whose weights start the training")
    _common(t, 2e-4, 10000, 0.999)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("train-restorer",
                       help="train a feed-forward restoration net (the better initial estimate)")
    r.add_argument("--data", required=True, help="training images (a data spec, as for train)")
    r.add_argument("--heldout", default=None, help="data to report held-out PSNR/MSE on")
    r.add_argument("--channels", type=int, default=1, help="image channels (1 gray, 3 RGB)")
    r.add_argument("--layers", type=int, default=1, help="ResNet layers per UNet block")
    r.add_argument("--any-mask", action="store_true",
                   help="MRI: the unrolled complex start for any Cartesian mask and size, trained "
                        "on native-resolution crops (data: brains-native or NIfTI) with random masks")
    r.add_argument("--sizes", type=int_list, default="64,96,128",
                   help="--any-mask: crop sizes, one per batch")
    r.add_argument("--iters", type=int, default=3, help="--any-mask: unrolled iterations")
    r.add_argument("--sigma-y", type=float, default=0.0,
                   help="measurement noise std ([0, 1] scale) added to the training measurements")
    _common(r, 5e-4, 3000, 0.995)
    add_task_args(r, required=True)
    r.set_defaults(func=cmd_train_restorer)

    s = sub.add_parser("train-sr3", help="train an SR3-style conditional diffusion model "
                       "(the SR baseline of the paper's Table 2)")
    s.add_argument("--data", required=True, help="fashion-mnist[:train] or a folder/.npy")
    _common(s, 3e-4, 10000, 0.999)
    add_task_args(s)
    s.set_defaults(func=cmd_train_sr3)

    e = sub.add_parser("train-esrgan", help="fine-tune an L1 restorer adversarially "
                       "(ESRGAN-style, relativistic average GAN)")
    e.add_argument("--data", required=True, help="training images (a data spec, as for train)")
    e.add_argument("--start", required=True, help="the L1-trained restorer folder to start from")
    e.add_argument("--heldout", default=None, help="data to report held-out PSNR/MSE on")
    e.add_argument("--adv-weight", type=float, default=5e-3, help="weight of the RaGAN loss")
    _common(e, 1e-4, 1500, 0.995, (16, 32, 64))
    e.set_defaults(func=cmd_train_esrgan)

    c = sub.add_parser("train-classifier", help="train the Fashion-MNIST classifier whose "
                       "features give the classifier-feature Frechet distance")
    c.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist"],
                   help="training data (only fashion-mnist)")
    _common(c, 1e-3, 3000, 0.99, batch=128)
    c.set_defaults(func=cmd_train_classifier)

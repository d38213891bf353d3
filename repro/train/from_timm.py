"""``repro recipe from-timm``: the ``args.yaml`` that timm's ``train.py`` writes beside every run, as a
recipe block. Every argument either maps to a field, is how the run ran (provenance, not recipe), or has
no field, which is an error naming it unless it holds timm's neutral value. timm's silent defaults are
written out as values: label smoothing 0.1, weight decay skipped on norms and biases
(``filter_bias_and_bn``), 'sgd' meaning Nesterov SGD, the warm-up evaluated at each unit's start.
"""
from __future__ import annotations

import math

# how the run ran, never what it computed: shown nowhere in a recipe
HOW_IT_RAN = {"amp", "amp_dtype", "amp_impl", "channels_last", "workers", "pin_mem", "seed", "log_interval",
              "recovery_interval", "output", "experiment", "checkpoint_hist", "eval_metric", "torchscript",
              "torchcompile", "device", "local_rank", "no_ddp_bb", "synchronize_step", "log_wandb", "wandb_tags",
              "wandb_project", "resume", "no_resume_opt", "start_epoch", "initial_checkpoint", "model", "pretrained",
              "pretrained_path", "data_dir", "data", "dataset", "train_split", "val_split", "dataset_download",
              "class_map", "num_classes", "validation_batch_size", "prefetcher", "no_prefetcher",
              "use_multi_epochs_loader",
              "save_images", "fuser", "fast_norm", "model_kwargs", "head_init_scale", "head_init_bias", "gp",
              "mean", "std", "in_chans", "input_size", "dist_bn", "worker_seeding", "split_bn", "model_ema_force_cpu",
              "model_ema_warmup", "torchcompile_mode", "device_modules", "dataset_trust_remote_code",
              "train_num_samples", "val_num_samples", "input_img_mode", "input_key", "target_key", "grad_checkpointing",
              "layer_decay_min_scale", "layer_decay_no_opt_scale", "opt_kwargs", "checkpoint_interval", "epoch_repeats",
              "patience_epochs", "lr_base", "lr_base_size", "lr_base_scale", "crop_mode", "bn_momentum", "bn_eps",
              "lr_cycle_mul", "lr_cycle_decay", "lr_cycle_limit", "lr_k_decay"}
# arguments with no field: fine at these values, an error otherwise
NEUTRAL = {"lr_noise": None, "layer_decay": None, "jsd_loss": False, "bce_loss": False, "bce_target_thresh": None,
           "aug_repeats": 0, "aug_splits": 0, "drop_connect": None, "drop_block": None, "cutmix_minmax": None,
           "mixup_off_epoch": 0, "mixup_mode": "batch", "clip_mode": "norm", "recount": 1, "resplit": False,
           "vflip": 0.0, "warmup_prefix": False, "sync_bn": False,
           "grad_accum_steps": 1, "no_aug": False, "bce_sum": False, "bce_pos_weight": None, "naflex_loader": False,
           "bn_tf": False, "crop_pct": None, "interpolation": "",
           "img_size": None, "scale": [0.08, 1.0], "ratio": [0.75, 1.3333333333333333], "hflip": 0.5,
           "train_interpolation": "bilinear"}
OPTIMIZERS = {"sgd": ("sgd", True), "nesterov": ("sgd", True), "momentum": ("sgd", False), "adamw": ("adamw", None),
              "adam": ("adam", None), "rmsprop": ("rmsprop", None)}


class TimmArgsError(ValueError):
    """An argument of args.yaml that no recipe field states (one line: the argument and its value)."""


def recipe_from_timm(args: dict, dataset: str, devices: int = 1) -> dict:
    """The recipe fields that ``args`` (timm's args.yaml) trains with; ``devices``: processes of the run
    (timm's batch_size is per process; the recipe's is the global batch)."""
    a = dict(args)
    used: set[str] = set()

    def take(name, default=None):
        used.add(name)
        return a.get(name, default)

    def fail(name, why):
        raise TimmArgsError(f"{name}: {a.get(name)!r}: {why}")

    out: dict = {"dataset": dataset, "epochs": take("epochs"), "batch_size": take("batch_size") * devices}
    if take("lr") is None:
        fail("lr", "the run scaled lr from lr_base (lr_base * batch / lr_base_size); state the lr it used")
    out["lr"] = a["lr"]
    opt = (take("opt") or "sgd").lower()
    if opt not in OPTIMIZERS:
        fail("opt", f"no recipe optimizer is timm's {opt!r} (repro: sgd, adamw, adam, rmsprop)")
    out["optimizer"], nesterov = OPTIMIZERS[opt]
    out["weight_decay"] = take("weight_decay", 0.0)
    out["weight_decay_skip"] = ["norm", "bias"]  # timm's filter_bias_and_bn: every 1-D parameter
    if out["optimizer"] == "sgd":
        out.update(momentum=take("momentum", 0.9), nesterov=nesterov)
    elif out["optimizer"] == "rmsprop":
        out["momentum"] = take("momentum", 0.9)
    if out["optimizer"] != "sgd":  # torch's defaults where args.yaml says None, written out
        out["eps"] = take("opt_eps") if a.get("opt_eps") is not None else 1e-8
        if out["optimizer"] != "rmsprop":
            out["betas"] = list(take("opt_betas")) if a.get("opt_betas") is not None else [0.9, 0.999]
    sched = take("sched") or "cosine"
    out["lr_step"] = "iteration" if take("sched_on_updates") else "epoch"
    if sched == "cosine":
        out.update(schedule="cosine", min_lr=take("min_lr", 0.0))
    elif sched == "step":
        out.update(schedule="exponential", gamma=take("decay_rate", 0.1), decay_every=take("decay_epochs", 100))
    elif sched == "multistep":
        out.update(schedule="step", gamma=take("decay_rate", 0.1), milestones=list(take("decay_milestones") or []))
    elif sched == "poly":
        out.update(schedule="poly", power=take("decay_rate", 0.5), min_lr=take("min_lr", 0.0))
    else:
        fail("sched", f"no recipe schedule is timm's {sched!r}")
    if take("warmup_epochs"):
        out.update(warmup_epochs=a["warmup_epochs"], warmup_lr=take("warmup_lr", 0.0), warmup_at="start",
                   warmup_step=out["lr_step"])
    if take("cooldown_epochs"):
        out["cooldown_epochs"] = a["cooldown_epochs"]
    out["label_smoothing"] = take("smoothing", 0.1)
    mixup, cutmix = take("mixup", 0.0) or 0.0, take("cutmix", 0.0) or 0.0
    if mixup or cutmix:
        out.update(mixup_alpha=mixup, cutmix_alpha=cutmix, mix_prob=take("mixup_prob", 1.0))
        if mixup and cutmix:
            out["mix_switch_prob"] = take("mixup_switch_prob", 0.5)
    if take("clip_grad") is not None:
        out["grad_clip_norm"] = a["clip_grad"]
    if take("drop_path"):
        out["drop_path"] = a["drop_path"]
    if take("drop"):
        out["dropout"] = a["drop"]
    if take("model_ema"):
        out["ema_decay"] = take("model_ema_decay", 0.9998)
    if take("grad_accum_steps", 1) and a.get("grad_accum_steps", 1) > 1:
        out["accumulate_steps"] = a["grad_accum_steps"]
    out["augment"] = _augment(a, take, fail)
    size, pct = take("img_size"), take("crop_pct")
    if size:
        out.update(eval_crop=size, eval_resize=math.floor(size / (pct or 0.875)))
    interpolation = take("interpolation")
    if interpolation:
        out["eval_interpolation"] = interpolation
    for name, value in a.items():
        if name in used or name in HOW_IT_RAN:
            continue
        if name in NEUTRAL:
            neutral = NEUTRAL[name]
            same = value == neutral or (isinstance(neutral, list) and value is not None
                                        and [round(v, 6) for v in value] == [round(v, 6) for v in neutral])
            if not same:
                fail(name, "no recipe field states it")
            continue
        if name in ("decay_epochs", "decay_rate", "min_lr", "warmup_lr", "mixup_prob", "mixup_switch_prob",
                    "model_ema_decay", "momentum", "opt_eps", "opt_betas", "smoothing", "color_jitter", "aa",
                    "reprob", "decay_milestones", "lr_noise_pct", "lr_noise_std", "remode"):
            continue  # read above where they apply; timm ignores them elsewhere too
        fail(name, "unknown to repro's timm mapping")
    return out


def _augment(a: dict, take, fail) -> list:
    if take("no_aug"):
        return ["normalize"]
    ops: list = ["random_resized_crop", "hflip"]
    aa = take("aa")
    if aa:
        if aa == "original":
            ops.append({"autoaugment": {"policy": "imagenet"}})
        else:
            fail("aa", "timm's auto-augment policies ('rand-m9-mstd0.5-inc1', 'v0', ...) have no torchvision "
                       "equivalent; state the augmentation in the recipe")
    elif take("color_jitter"):
        cj = a["color_jitter"]
        ops.append({"color_jitter": {"brightness": cj, "contrast": cj, "saturation": cj}})
    ops.append("normalize")
    if take("reprob"):
        if a.get("remode", "pixel") != "const":
            fail("remode", "timm's per-pixel random erasing fill has no recipe field (repro erases to 0: remode const)")
        ops.append({"random_erasing": {"p": a["reprob"], "scale": [0.02, 1 / 3], "ratio": [0.3, 3.3]}})
    return ops

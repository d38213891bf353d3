"""The recipe's vocabulary, torch-free: the one list that ``repro.specs`` validates against and that the
training code and the data paths derive from (three lists drift; one cannot).

Each optimizer and schedule row names the recipe fields that belong to it, so a field that does not belong
to the chosen optimizer or schedule is a spec error, not a value that is silently ignored. Each augmentation
row names its parameters, their ranges and the library whose meaning it has.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# --- optimizers: name -> (the torch.optim class, the recipe fields that belong to it) -------------------
# Recipe field -> torch keyword: momentum, nesterov, betas, eps, alpha (rmsprop's smoothing constant).
OPTIMIZERS: dict[str, tuple[str, frozenset[str]]] = {
    "sgd": ("SGD", frozenset({"momentum", "nesterov"})),
    "adamw": ("AdamW", frozenset({"betas", "eps"})),
    "adam": ("Adam", frozenset({"betas", "eps"})),
    "rmsprop": ("RMSprop", frozenset({"momentum", "eps", "alpha"})),
}
OPTIMIZER_FIELDS = frozenset().union(*(f for _, f in OPTIMIZERS.values()))
WEIGHT_DECAY_SKIP = ("norm", "bias")  # parameter groups without weight decay (timm's filter_bias_and_bn)

# --- schedules: name -> the recipe fields that belong to it --------------------------------------------
SCHEDULES: dict[str, frozenset[str]] = {
    "step": frozenset({"milestones", "gamma"}),  # x gamma at each milestone (MultiStepLR)
    "cosine": frozenset({"min_lr"}),  # half a cosine from lr to min_lr (CosineAnnealingLR, eta_min)
    "linear": frozenset({"min_lr"}),  # straight line from lr to min_lr (poly with power 1)
    "poly": frozenset({"min_lr", "power"}),  # (1 - t/T) ** power from lr to min_lr (PolynomialLR)
    "exponential": frozenset({"gamma", "decay_every"}),  # x gamma every decay_every epochs (timm 'step')
    "constant": frozenset(),
}
SCHEDULE_FIELDS = frozenset().union(*SCHEDULES.values())
STEP_UNITS = ("epoch", "iteration")


# --- augmentations ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    kind: type  # int, float, str, or tuple (a pair of floats)
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Augmentation:
    name: str
    meaning: str  # the library behaviour it mirrors, quoted in the docs and the report
    params: dict[str, Param] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)  # the library's defaults, written into the job
    device: bool = False  # the device-resident fast path implements it (else the job streams; provenance says so)
    imagenet_fast: bool = False  # the fast ImageNet input implements it
    tensor: bool = False  # applied to the normalised tensor (random erasing), not to the image


_PAIR = Param(tuple, 0, 1_000)
AUGMENTATIONS: dict[str, Augmentation] = {a.name: a for a in (
    Augmentation("random_crop_pad4", "torchvision RandomCrop(size, padding=4) (zero padding)", device=True),
    Augmentation("hflip", "torchvision RandomHorizontalFlip(p=0.5)", device=True, imagenet_fast=True),
    Augmentation("rotate15", "torchvision RandomRotation(15) (nearest, zero fill)", device=True),
    Augmentation("random_resized_crop", "torchvision RandomResizedCrop(size) (scale (0.08, 1), ratio (3/4, 4/3), "
                 "bilinear)", imagenet_fast=True),
    Augmentation("normalize", "torchvision Normalize(dataset mean, std)", device=True, imagenet_fast=True),
    Augmentation("to_unit", "pixels scaled to [0, 1] (ToTensor), no normalisation", device=True, imagenet_fast=True),
    Augmentation("randaugment", "torchvision.transforms.v2.RandAugment(num_ops, magnitude, num_magnitude_bins)",
                 {"num_ops": Param(int, 0, 16), "magnitude": Param(int, 0, 30),
                  "num_magnitude_bins": Param(int, 2, 100)},
                 {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 31}),
    Augmentation("autoaugment", "torchvision.transforms.v2.AutoAugment(policy)",
                 {"policy": Param(str, choices=("imagenet", "cifar10", "svhn"))}, {"policy": "imagenet"}),
    Augmentation("trivialaugment", "torchvision.transforms.v2.TrivialAugmentWide(num_magnitude_bins)",
                 {"num_magnitude_bins": Param(int, 2, 100)}, {"num_magnitude_bins": 31}),
    Augmentation("random_erasing", "torchvision.transforms.v2.RandomErasing(p, scale, ratio, value=0) on the "
                 "normalised tensor", {"p": Param(float, 0, 1), "scale": Param(tuple, 0, 1), "ratio": _PAIR},
                 {"p": 0.5, "scale": (0.02, 0.33), "ratio": (0.3, 3.3)}, tensor=True),
    Augmentation("color_jitter", "torchvision.transforms.v2.ColorJitter(brightness, contrast, saturation, hue)",
                 {"brightness": Param(float, 0, 10), "contrast": Param(float, 0, 10),
                  "saturation": Param(float, 0, 10), "hue": Param(float, 0, 0.5)},
                 {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}),
)}
DEVICE_AUGMENTATIONS = tuple(n for n, a in AUGMENTATIONS.items() if a.device)
IMAGENET_FAST_AUGMENTATIONS = tuple(n for n, a in AUGMENTATIONS.items() if a.imagenet_fast)
EVAL_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def augment_name(entry) -> str:
    """``hflip`` or ``{randaugment: {...}}`` -> the augmentation's name."""
    return entry if isinstance(entry, str) else next(iter(entry))


def augment_params(entry) -> dict:
    """An entry's parameters with the library's defaults filled in (what the job runs)."""
    aug = AUGMENTATIONS[augment_name(entry)]
    given = {} if isinstance(entry, str) else dict(next(iter(entry.values())) or {})
    return {**aug.defaults, **given}


def check_augment(entry) -> str | None:
    """Why ``entry`` is not a valid augmentation (None when it is): unknown name, unknown parameter, or a
    value outside the library's range."""
    if isinstance(entry, dict):
        if len(entry) != 1:
            return f"{entry!r}: an augmentation with parameters is a one-key mapping, e.g. {{randaugment: {{...}}}}"
        name, params = next(iter(entry.items()))
        if params is not None and not isinstance(params, dict):
            return f"{name}: parameters must be a mapping, got {params!r}"
    elif isinstance(entry, str):
        name, params = entry, None
    else:
        return f"{entry!r} is neither a name nor a one-key mapping"
    if name not in AUGMENTATIONS:
        return f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}"
    aug = AUGMENTATIONS[name]
    for key, value in (params or {}).items():
        if key not in aug.params:
            return (f"{name}: unknown parameter {key!r}; known: {', '.join(aug.params) or 'none'}")
        p = aug.params[key]
        if p.choices:
            if value not in p.choices:
                return f"{name}.{key}: {value!r} is not one of {', '.join(p.choices)}"
            continue
        values = list(value) if p.kind is tuple and isinstance(value, (list, tuple)) else [value]
        if p.kind is tuple and len(values) != 2:
            return f"{name}.{key}: expected a pair [low, high], got {value!r}"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (p.kind is int and not isinstance(v, int)):
                return f"{name}.{key}: expected {'an integer' if p.kind is int else 'a number'}, got {v!r}"
            if not (p.lo <= v <= p.hi) or v != v:
                return f"{name}.{key}: {v!r} is out of range: allowed [{p.lo:g}, {p.hi:g}] (the library's range)"
        if p.kind is tuple and values[0] > values[1]:
            return f"{name}.{key}: {value!r} must be [low, high] with low <= high"
    return None

"""Model zoo for the papers ``repro`` reproduces.

Public API: ``repro_models.create(name, num_classes=..., **kwargs)`` and ``repro_models.available()``
(the folder ``models/`` is installed under the import name ``repro_models``: see pyproject.toml).
Every module is imported here explicitly so that nothing is missing from the registries.
"""
from .registry import ATTENTIONS, BACKBONES, MODELS, MODEL_INFO, available, create, is_known  # noqa: F401

# attentions
from .attention import cra, se  # noqa: F401,E402
from .attention import cmpe_se as _cmpe_se_attention  # noqa: F401,E402

# backbones and named models
from .backbones import resnet_cifar100  # noqa: F401,E402
from . import aux, se_r  # noqa: F401,E402
from .backbones import preact_resnet, wrn  # noqa: F401,E402
from . import cmpe_se  # noqa: F401,E402
from .backbones import densenet, resnet_cifar, resnext_cifar, shufflenet, vgg  # noqa: F401,E402
from . import cra_cifar  # noqa: F401,E402
from .attention import bam, cbam, gala  # noqa: F401,E402
from .attention import csm as _csm_attention  # noqa: F401,E402
from .backbones import resnet  # noqa: F401,E402
from . import cra_imagenet, csm, detection  # noqa: F401,E402

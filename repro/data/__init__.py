"""The data side: what each dataset is (``datasets``: the registry, torch-free), reading it from its
on-disk format (``readers``), tiny fakes of each format (``fakes``) and the restricted unpickler they read
through (``safe_pickle``), per-channel mean/std (``channel_stats``), and the loaders a job trains from
(``loaders``, which picks the device-resident ``fastdata``/``imagenet_input`` paths or a ``DataLoader``;
``epoch_batches`` is their shared sampler).

This package exports nothing itself and imports nothing: ``import repro.data.datasets`` (what
``repro.specs`` and ``repro.plan`` do) never loads torch. Import the module you need.
"""

"""Training: the recipe's vocabulary (``names``, torch-free) and one implementation of it, shared by
classification (``trainer``), detection (``detect``), ``repro bench`` and the GPU-hour estimate:
``optimizer`` (torch.optim from one table), ``schedule`` (the lr as a pure function of the update), ``mix``
(mixup, CutMix, label smoothing), ``step`` (backward, clip, step, EMA), ``ema``, ``checkpoints``.

Importing this package imports nothing: ``repro.specs`` reads ``names`` without torch.
"""

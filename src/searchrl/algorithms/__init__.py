"""Pure RL math: masked reductions, advantage estimators, losses, chunked log-probs, registries.

Modules: ``masked`` (masked sum/mean/var/whiten), ``advantages`` (estimators, registered by
``train.algorithm``), ``losses`` (policy losses, value loss, KL estimators, aggregation), ``logprobs``
(log-probs and entropy without a full-vocabulary fp32 log-softmax), ``names`` (the registries' names,
the ``Literal`` types the config fields use). Import from the modules; this package imports nothing, so
``searchrl.config`` can read ``names`` without importing torch.

Every function takes tensors and plain numbers and returns tensors; shapes use B (batch), G (group),
T (target positions), V (vocabulary). ``loss_mask`` (1 = token sampled by the policy) drives every
reduction; see ``masked.py`` for its exact semantics.
"""

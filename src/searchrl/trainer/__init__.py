"""searchrl's own RL trainer: the loop as named stages, the update, log-probs, checkpoints, SFT warm start.

``loop`` (the :class:`~searchrl.trainer.loop.Trainer`), ``batch`` (collation and the scored batch),
``logprobs``, ``advantage``, ``update``, ``lora``, ``reference`` and ``critic`` (the models beside the
policy), ``checkpoint``, ``distributed``, ``sft``. Import from the modules; this file imports nothing.
Only entry points (``cli``, ``demo``, ``experiment``, ``engines``) and ``export`` (which reads checkpoints)
import this package; ``tests/test_imports.py`` checks it.
"""

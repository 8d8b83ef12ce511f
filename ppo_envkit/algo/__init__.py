"""The PPO algorithm, one module per step of a training iteration.

Data flows one way::

    Collector.collect()  ->  RolloutBuffer  ->  compute_advantages() (GAE)  ->  Learner.update()
       (collector.py)        (rollout.py)          (rollout.py)                 (learner.py, losses.py)

:class:`~.trainer.Trainer` runs that loop (callbacks, non-finite values, Ctrl-C,
checkpoint state). The network is :class:`~.policy.ActorCritic`; :mod:`.heads` is the
one place that maps an action space to a distribution; :mod:`.normalize` holds the
running statistics; :mod:`.fastpath` computes the same forward pass and gradient in
numpy where that is faster. ``docs/architecture.md`` draws the whole picture.
"""

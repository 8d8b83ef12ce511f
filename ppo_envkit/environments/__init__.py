"""The environments side: how a user's environment becomes something ``train``, ``eval`` and
``replay`` understand.

* :mod:`.registry`: ``register_env`` over ``gym.register`` (ids, variants, presets, action names);
* :mod:`.lookup`: questions about registered environments (user or built-in, variants, presets);
* :mod:`.discovery`: finding the code that registers them (``--env-module``, ``./envs``, entry points);
* :mod:`.factory`: building one environment, or the vector of training copies;
* :mod:`.episodes`: per-episode seeding and replay, which make resuming exact;
* :mod:`.checker` (running the environment), :mod:`.space_checks`, :mod:`.checks`,
  :mod:`.gymnasium_check`, :mod:`.findings`: the environment checker (no torch);
* :mod:`.scaffold`: ``new-env``, a working environment, test and preset from templates.
"""

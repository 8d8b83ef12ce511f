"""Deploying an agent: its deterministic policy as one ONNX graph (:mod:`.onnx`), and the
check that onnxruntime acts as :meth:`~ppo_envkit.agent.PPO.predict` does (:mod:`.check`).

Both work from the policy, the settings and the training state (an :class:`.onnx.ExportSource`),
never from the ``PPO`` facade, which calls them.
"""

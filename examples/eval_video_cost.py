"""Cost of one evaluation video (run.eval_video): play+render, the MP4 file, TensorBoard's GIF.

    python examples/eval_video_cost.py [CARTPOLE_AGENT_DIR] [LUNARLANDER_AGENT_DIR]

Untrained policies without arguments (agents/lunarlander is the shipped LunarLander agent).
"""

import sys
import tempfile
import time
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from ppo_envkit import PPO
from ppo_envkit.algo.video import play_episode
from ppo_envkit.config import TrainConfig
from ppo_envkit.io.media import tensorboard_video, write_mp4

for env_id, source in [
    ("CartPole-v1", sys.argv[1] if len(sys.argv) > 1 else None),
    ("LunarLander-v3", sys.argv[2] if len(sys.argv) > 2 else None),
]:
    agent = PPO.load(source) if source else PPO(config=TrainConfig().with_overrides({"env.id": env_id}))
    d = Path(tempfile.mkdtemp())
    w = SummaryWriter(str(d / "tb"))
    for rep in range(3):
        t0 = time.perf_counter()
        ep = play_episode(agent.policy, agent.config.env, seed=rep)
        t1 = time.perf_counter()
        write_mp4(d / f"v{rep}.mp4", ep.frames, ep.fps)
        t2 = time.perf_counter()
        tensorboard_video(w, "eval/video", ep.frames, ep.fps, rep)
        t3 = time.perf_counter()
        n = len(ep.frames)
        size = (d / f"v{rep}.mp4").stat().st_size // 1024
        kind = "trained" if source else "untrained"
        print(
            f"{env_id} ({kind}) frames {n} {ep.frames[0].shape}: play+render {t1 - t0:.2f}s "
            f"mp4 {t2 - t1:.2f}s tb-gif {t3 - t2:.2f}s total {t3 - t0:.2f}s = "
            f"{1000 * (t3 - t0) / n:.1f} ms/frame; mp4 {size} KiB"
        )
    w.close()

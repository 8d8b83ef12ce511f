"""Videos of episodes for the run's sinks: an MP4 file, a TensorBoard video, an inline
notebook video. No dependency beyond the package's own: MP4 through imageio-ffmpeg,
GIF through Pillow.

TensorBoard shows videos as animated GIFs in its Images tab. ``SummaryWriter.add_video``
makes that GIF with moviepy (not a dependency); :func:`tensorboard_video` writes the same
summary from a GIF made with Pillow instead.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Frames per second when the environment declares none (``metadata["render_fps"]``).
DEFAULT_FPS = 30.0
#: TensorBoard's GIF is at most this wide (frames are subsampled by a whole factor: 600
#: pixels become 300): encoding a full-size GIF costs more than playing and rendering the
#: episode. The MP4 file keeps the full size.
TENSORBOARD_WIDTH = 320


def _rgb(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 frames [height, width, 3], got {frame.dtype} {frame.shape}")
        out.append(np.ascontiguousarray(frame))
    if not out:
        raise ValueError("no frames to write")
    return out


def gif_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """An animated GIF (looping), each frame with its own palette."""
    from PIL import Image

    images = [
        Image.fromarray(f, "RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE) for f in _rgb(frames)
    ]
    buffer = io.BytesIO()
    duration = max(20, round(1000.0 / fps / 10) * 10)  # whole centiseconds, at least 2
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """H.264 MP4 (yuv420p: plays in browsers), written next to ``path`` and renamed onto it."""
    import imageio_ffmpeg

    frames = _rgb(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=f".{path.stem}-", dir=path.parent)
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            tmp,
            (width, height),
            fps=fps,
            codec="libx264",
            quality=7.0,
            macro_block_size=2,  # yuv420p needs even sizes; larger blocks would rescale
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frame size changed: {frame.shape[:2]} != {(height, width)}")
            writer.send(frame.tobytes())
        writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def mp4_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return write_mp4(Path(folder) / "episode.mp4", frames, fps).read_bytes()


def tensorboard_video(writer: Any, tag: str, frames: Sequence[np.ndarray], fps: float, step: int) -> None:
    """What ``writer.add_video`` writes (an animated GIF in an image summary), without moviepy."""
    from torch.utils.tensorboard.summary import Summary

    frames = _rgb(frames)
    stride = -(-frames[0].shape[1] // TENSORBOARD_WIDTH)
    if stride > 1:
        frames = [np.ascontiguousarray(f[::stride, ::stride]) for f in frames]
    height, width = frames[0].shape[:2]
    image = Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps)
    )
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    writer._get_file_writer().add_summary(summary, step, None)
    writer.flush()


class InlineVideo:
    """An episode as an inline HTML5 video (MP4, base64): Jupyter shows it through
    ``_repr_html_``; :meth:`save` writes the file."""

    def __init__(
        self, data: bytes, mime: str = "video/mp4", *, episode_return: float = float("nan"), frames: int = 0
    ):
        self.data, self.mime = data, mime
        self.episode_return, self.frames = episode_return, frames

    def _repr_html_(self) -> str:
        encoded = base64.b64encode(self.data).decode("ascii")
        if self.mime == "image/gif":
            return f'<img src="data:image/gif;base64,{encoded}"/>'
        source = f"data:{self.mime};base64,{encoded}"
        return f'<video controls autoplay loop muted playsinline src="{source}"></video>'

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.data)
        return path

    def __repr__(self) -> str:
        return f"<InlineVideo {self.mime}, {self.frames} frames, return {self.episode_return:.2f}>"


__all__ = [
    "DEFAULT_FPS",
    "TENSORBOARD_WIDTH",
    "InlineVideo",
    "gif_bytes",
    "mp4_bytes",
    "tensorboard_video",
    "write_mp4",
]

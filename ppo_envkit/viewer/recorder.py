"""Video recording for the viewer: MP4 through imageio-ffmpeg, GIF through Pillow.

Both writers stream: each frame goes to disk (or to the ffmpeg process) as it
arrives, so a long replay does not hold every frame in memory (imageio's own
GIF writer keeps all of them until it closes). Every frame written is a frame
in the file: nothing is merged or dropped, which keeps frame counts exact.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StorageError

#: File name endings ``--record`` understands.
RECORD_FORMATS = (".mp4", ".gif")


class Recorder:
    """Writes RGB frames ``[height, width, 3]`` (uint8) to a video file at ``fps``."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = float(fps)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_record_path(path: str | Path) -> Path:
    """The path as a :class:`Path`, or a ``ValueError`` naming the formats understood."""
    path = Path(path)
    if path.suffix.lower() not in RECORD_FORMATS:
        raise ValueError(
            f"cannot record to '{path}': the file name must end in "
            + " or ".join(RECORD_FORMATS)
            + " (e.g. replay.mp4)"
        )
    return path


def open_recorder(path: str | Path, fps: float) -> Recorder:
    """A recorder for ``path``, chosen by its extension (``.mp4`` or ``.gif``)."""
    path = check_record_path(path)
    try:  # find out now, in one line, rather than from ffmpeg after the first frame
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise StorageError(exc.errno or 0, f"cannot record to {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".gif":
        return GifRecorder(path, fps)
    return Mp4Recorder(path, fps)


class Mp4Recorder(Recorder):
    """H.264 in an MP4 container (yuv420p, so it plays in browsers and players)."""

    def __init__(self, path: str | Path, fps: float, quality: float = 7.0):
        super().__init__(path, fps)
        self.quality = quality
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        frame = _as_rgb(frame)
        height, width = frame.shape[:2]
        if self._writer is None:
            import imageio_ffmpeg

            self._size = (width, height)
            # macro_block_size=2: yuv420p needs even sizes; larger blocks would rescale the video.
            self._writer = imageio_ffmpeg.write_frames(
                str(self.path),
                (width, height),
                fps=self.fps,
                codec="libx264",
                quality=self.quality,
                macro_block_size=2,
                ffmpeg_log_level="error",
            )
            self._writer.send(None)
        elif (width, height) != self._size:
            raise ValueError(f"frame size changed during recording: {(width, height)} != {self._size}")
        self._writer.send(np.ascontiguousarray(frame).tobytes())
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class GifRecorder(Recorder):
    """An animated GIF written frame by frame, each with its own 256-colour palette.

    GIF delays are whole centiseconds; they are rounded so that the average
    matches ``fps`` (30 fps alternates 3 and 4 cs). Delays under 2 cs are raised
    to 2 cs, the smallest that browsers honour.
    """

    def __init__(self, path: str | Path, fps: float):
        super().__init__(path, fps)
        self._fh: Any = None
        self._size: tuple[int, int] | None = None
        self._clock_cs = 0.0
        self._emitted_cs = 0

    def write(self, frame: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        frame = _as_rgb(frame)
        height, width = frame.shape[:2]
        if self._fh is None:
            self._size = (width, height)
            self._fh = open(self.path, "wb")
            self._fh.write(_gif_header(width, height))
        elif (width, height) != self._size:
            raise ValueError(f"frame size changed during recording: {(width, height)} != {self._size}")
        image = Image.fromarray(np.ascontiguousarray(frame), "RGB").quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
        self._clock_cs += 100.0 / self.fps
        delay = max(2, round(self._clock_cs) - self._emitted_cs)
        self._emitted_cs += delay
        for chunk in GifImagePlugin.getdata(image, duration=delay * 10, include_color_table=True):
            self._fh.write(chunk)
        self.frames += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.write(b";")  # GIF trailer
            self._fh.close()
            self._fh = None


def _gif_header(width: int, height: int) -> bytes:
    """GIF89a header without a global colour table, looping forever (NETSCAPE2.0)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x70, 0, 0)
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
    return screen + loop


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame [height, width, 3], got {frame.dtype} {frame.shape}")
    return frame


__all__ = ["RECORD_FORMATS", "GifRecorder", "Mp4Recorder", "Recorder", "check_record_path", "open_recorder"]

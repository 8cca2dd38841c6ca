"""What a video source is: frame count, frame rate, size, audio — without decoding it.

Sources are video files (anything FFmpeg demuxes, read through PyAV), folders of frames
(plain or DAVIS layout, see :mod:`lc4.io.frames`) and single images.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import av

from .frames import IMAGE_EXTENSIONS, find_frame_files, image_size

__all__ = ["VideoInfo", "probe", "as_frame_rate", "DEFAULT_FPS", "source_kind", "open_video", "video_stream", "frame_rotation",
           "FrameTimes", "frame_times"]

#: Frame rate assumed for folders of frames and single images (they carry none).
DEFAULT_FPS = Fraction(25)

SourceKind = Literal["video", "frames", "image"]


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a source. ``fps`` is a float for display; ``frame_rate`` is the exact rational
    rate (``30000/1001`` for NTSC) to hand to :class:`~lc4.io.VideoWriter`. ``width``/``height``
    are as displayed (rotation metadata applied)."""

    num_frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    kind: SourceKind
    frame_rate: Fraction = DEFAULT_FPS
    path: Path | None = None
    audio_codec: str | None = None
    rotation: int = 0
    sample_aspect_ratio: Fraction = Fraction(1)

    @property
    def duration(self) -> float:
        """Seconds of video (frames / rate)."""
        return self.num_frames / float(self.frame_rate)


def as_frame_rate(fps: float | int | str | Fraction) -> Fraction:
    """Exact frame rate from a number or ``"30000/1001"``; NTSC-style floats snap to ``k*1000/1001``.

    ``29.97`` and ``29.97002997`` both give ``30000/1001``; ``25.0`` gives ``25``.
    """
    if isinstance(fps, bool):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if isinstance(fps, str):
        try:
            rate = Fraction(fps.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"fps must be a positive number or a ratio like '30000/1001', got {fps!r}") from None
        if rate.denominator == 1 or "/" in fps:
            return _checked_rate(rate, fps)
        fps = float(rate)
    if isinstance(fps, Fraction):
        return _checked_rate(fps, fps)
    if isinstance(fps, int):
        return _checked_rate(Fraction(fps), fps)
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive number, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    k = round(value * 1.001)
    if k > 0 and abs(value - k * 1000 / 1001) < 1e-3 and abs(value - round(value)) > 1e-3:
        return Fraction(k * 1000, 1001)
    return _checked_rate(Fraction(value).limit_denominator(1001), fps)


def _checked_rate(rate: Fraction, given: object) -> Fraction:
    if rate <= 0 or rate > 1000:
        raise ValueError(f"fps must be in (0, 1000], got {given!r}")
    return rate


def source_kind(path: str | Path) -> SourceKind:
    """``"frames"`` for a directory, ``"image"`` for an image file, ``"video"`` otherwise."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_dir():
        return "frames"
    return "image" if p.suffix.lower() in IMAGE_EXTENSIONS else "video"


@contextmanager
def open_video(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open a media file with PyAV, turning FFmpeg errors into one-line ``ValueError``s."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, not a video file")
    try:
        container = av.open(str(p), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: cannot read video ({_short(e)})") from None
    try:
        yield container
    finally:
        container.close()


def _short(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"{type(e).__name__}: {msg}" if msg != type(e).__name__ else msg


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream (cover-art pictures skipped), or a ``ValueError``."""
    for stream in container.streams.video:
        if not (stream.disposition & av.stream.Disposition.attached_pic):
            return stream
    raise ValueError(f"{path}: has no video stream")


def frame_rotation(frame: av.VideoFrame) -> int:
    """Display rotation of a decoded frame in degrees, counter-clockwise: 0, 90, 180 or 270."""
    return int(round(frame.rotation / 90.0)) * 90 % 360


def _first_frame_rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path) -> int:
    """Decode the first frame (proves the stream decodes) and return its display rotation."""
    try:
        for frame in container.decode(stream):
            return frame_rotation(frame)
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode video ({_short(e)})") from None
    raise ValueError(f"{path}: video has no frames")


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frames by counting demuxed packets (no decoding), for containers that store no count."""
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _probe_video(p: Path) -> VideoInfo:
    with open_video(p) as container:
        stream = video_stream(container, p)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frame_rate = as_frame_rate(rate) if rate else DEFAULT_FPS
        width, height = stream.codec_context.width, stream.codec_context.height
        audio = next(iter(container.streams.audio), None)
        audio_codec = audio.codec_context.name if audio is not None else None
        sar = stream.sample_aspect_ratio or Fraction(1)
        num_frames = int(stream.frames or 0)
        rotation = _first_frame_rotation(container, stream, p)
    if num_frames <= 0:
        with open_video(p) as container:
            try:
                num_frames = _count_packets(container, video_stream(container, p))
            except av.error.FFmpegError as e:
                raise ValueError(f"{p}: cannot read video ({_short(e)})") from None
    if num_frames <= 0:
        raise ValueError(f"{p}: video has no frames")
    if width <= 0 or height <= 0:
        raise ValueError(f"{p}: video stream has no frame size")
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        num_frames=num_frames,
        fps=float(frame_rate),
        width=width,
        height=height,
        has_audio=audio is not None,
        kind="video",
        frame_rate=frame_rate,
        path=p,
        audio_codec=audio_codec,
        rotation=rotation,
        sample_aspect_ratio=Fraction(sar),
    )


@dataclass(frozen=True)
class FrameTimes:
    """When each frame of a video is shown: presentation timestamps in display order.

    ``pts`` are in units of ``time_base`` (seconds = ``pts * time_base``), as the source stores
    them; ``last_duration`` is how long the last frame is shown, in the same units: the gap
    before it (packet durations are in decode order in MP4, so they cannot say). Pass this to
    :class:`~lc4.io.VideoWriter` (``timestamps=``) to keep a variable frame rate.
    """

    pts: tuple[int, ...]
    time_base: Fraction
    last_duration: int

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, i: int) -> float:
        """Start of frame ``i`` in seconds after the first frame (extrapolated past the end)."""
        n = len(self.pts)
        if i < n:
            return float((self.pts[i] - self.pts[0]) * self.time_base)
        return float((self.pts[-1] - self.pts[0] + (i - n + 1) * self.last_duration) * self.time_base)

    def is_variable(self, rate: Fraction, tolerance: float = 0.25) -> bool:
        """Whether the frames stray from the constant-rate grid ``i / rate`` by more than
        ``tolerance`` frames (or than the time base's rounding, whichever is larger)."""
        if len(self.pts) < 2:
            return False
        tol = max(1.5 * float(self.time_base), tolerance / float(rate))
        step = 1 / float(rate)
        return any(abs(self.seconds(i) - i * step) > tol for i in range(len(self.pts)))


def frame_times(path: str | Path) -> FrameTimes | None:
    """Presentation timestamps of every frame of a video file, read from the packets (nothing is
    decoded). ``None`` for frame folders and images, and for streams whose packets carry no
    timestamps (then only a constant rate is known)."""
    p = Path(path)
    if source_kind(p) != "video":
        return None
    with open_video(p) as container:
        stream = video_stream(container, p)
        tb = stream.time_base
        if not tb:
            return None
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
        stamps: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None:
                    return None
                stamps.append(int(packet.pts))
        except av.error.FFmpegError as e:
            raise ValueError(f"{p}: cannot read video ({_short(e)})") from None
    if not stamps:
        return None
    pts = tuple(sorted(stamps))
    if len(set(pts)) != len(pts):
        return None  # repeated timestamps: not usable as a timeline
    last = pts[-1] - pts[-2] if len(pts) > 1 else round(1 / (Fraction(rate) * Fraction(tb)))
    return FrameTimes(pts=pts, time_base=Fraction(tb), last_duration=max(1, int(last)))


def probe(path: str | Path, fps: float | str | Fraction | None = None) -> VideoInfo:
    """Describe a video file, a folder of frames or a single image (nothing is decoded in full).

    ``fps`` overrides the rate of frame folders and images (default 25); for video files the
    container's rate is used and ``fps`` must be ``None``. Raises ``FileNotFoundError`` for a
    missing path or a folder without frames, ``ValueError`` for an unreadable/corrupt file or a
    video without frames.
    """
    p = Path(path)
    kind = source_kind(p)
    if kind == "video":
        if fps is not None:
            raise ValueError(f"{p}: fps can only be given for frame folders and images; videos carry their own")
        return _probe_video(p)
    rate = as_frame_rate(fps) if fps is not None else DEFAULT_FPS
    files = find_frame_files(p) if kind == "frames" else [p]
    width, height = image_size(files[0])
    return VideoInfo(
        num_frames=len(files),
        fps=float(rate),
        width=width,
        height=height,
        has_audio=False,
        kind=kind,
        frame_rate=rate,
        path=p,
    )

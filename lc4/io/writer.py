"""Write frames to an H.264 video (MP4, MKV or MOV) at the source's exact frame rate, or with its
own frame timestamps (variable frame rate), with its audio, atomically and byte-reproducibly.

Colour: RGB frames are converted to Y'CbCr with the BT.709 matrix, limited range, and the
stream is tagged BT.709 (primaries, transfer, matrix), which is what players assume for
sRGB-like content; :func:`lc4.io.read_frames` honours those tags, so a round trip is faithful.

Reproducibility: the same frames give the same bytes on every run and machine with the same
PyAV/FFmpeg build: x264 runs with a fixed thread count (its output depends on the count, which
"auto" takes from the CPUs available) and without its AVX-512 code (see :func:`x264_cpu_setting`),
and the muxer and encoders run in FFmpeg's bit-exact mode (no library version tags, no creation
date, no random Matroska UIDs).
"""

from __future__ import annotations

import functools
import math
import os
import platform
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Literal

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from .atomic import AtomicOutput, PathLike
from .audio import MKV_COPY_CODECS, MP4_COPY_CODECS, AudioPassthrough
from .probe import DEFAULT_FPS, FrameTimes, _short, as_frame_rate

__all__ = ["VideoWriter", "MAX_DIMENSION", "VIDEO_CONTAINERS", "UNSUPPORTED_VIDEO_SUFFIXES", "video_container",
           "DEFAULT_THREADS", "x264_cpu_setting"]

#: Output suffix -> FFmpeg muxer, for the containers lc4 writes (all with H.264 video).
VIDEO_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
#: Video suffixes lc4 reads but does not write (refused rather than written as something else).
UNSUPPORTED_VIDEO_SUFFIXES = frozenset({
    ".avi", ".webm", ".gif", ".m4v", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".vob", ".ogv",
    ".3gp", ".3g2", ".mxf", ".dv", ".y4m", ".h264", ".264", ".hevc", ".rm", ".asf", ".f4v",
})
#: x264 threads: fixed, because x264's output depends on its thread count.
DEFAULT_THREADS = 4
#: x264 CPU setting on CPUs with AVX-512: every instruction set x264 uses up to AVX2 (with FMA3, BMI2).
X264_NO_AVX512 = "AVX2"
_COPY_CODECS = {"mp4": MP4_COPY_CODECS, "mov": MP4_COPY_CODECS, "matroska": MKV_COPY_CODECS}


def _x86_cpu_flags() -> frozenset[str] | None:
    """The x86 CPU's feature flags in lower case (Linux, macOS, Windows), or None elsewhere or when unknown."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return None
    try:
        if os.path.exists("/proc/cpuinfo"):
            for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].lower().split())
        elif platform.system() == "Darwin":
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                                 capture_output=True, text=True, timeout=5).stdout
            return frozenset(out.lower().split())
        elif platform.system() == "Windows":
            import ctypes

            present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
            return frozenset(name for name, code in (("avx2", 40), ("avx512f", 41)) if present(code))
    except (OSError, subprocess.SubprocessError, AttributeError, ValueError):
        return None
    return None


@functools.lru_cache(maxsize=1)
def x264_cpu_setting() -> str | None:
    """The ``asm`` value lc4 gives x264, or None to let x264 use everything the CPU has.

    Why: with its AVX-512 code (chosen automatically on CPUs that have it) x264 165 gave a different
    bitstream now and then for the same frames, about 1 encode in 20, even on one thread; its
    macroblock-tree rate control is the part affected (``mbtree=0`` or ``aq-mode=0`` hid it too,
    at a cost in quality). Up to AVX2 it is deterministic (0 in 150 encodes differed) and no
    slower, and the bytes equal those from CPUs without AVX-512 (measured equal for x264's
    SSSE3, SSE4.2, AVX and AVX2 code; docs/io.md).
    """
    flags = _x86_cpu_flags()
    if flags and "avx512f" in flags and "avx2" in flags:
        return X264_NO_AVX512
    return None


def video_container(path: PathLike) -> str:
    """The FFmpeg muxer for an output video path (``.mp4``, ``.mkv``, ``.mov``), else a one-line ``ValueError``."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_CONTAINERS:
        return VIDEO_CONTAINERS[suffix]
    kind = "video format" if suffix in UNSUPPORTED_VIDEO_SUFFIXES else "suffix"
    raise ValueError(f"{path}: lc4 cannot write the {kind} {suffix or '(none)'!r}; write .mp4, .mkv or .mov "
                     "(H.264) and convert it with ffmpeg if you need another format")

#: Largest frame side libx264 accepts.
MAX_DIMENSION = 16384
_PIXEL_FORMATS = ("yuv420p", "yuv444p")
# FFmpeg AVColor* codes for BT.709 (primaries, transfer, matrix) and limited ("MPEG") range.
_AVCOL_BT709 = 1
_AVCOL_RANGE_MPEG = 1


class VideoWriter:
    """Context manager writing ``uint8`` RGB frames to an H.264 MP4/MKV/MOV, atomically.

    ``fps`` may be a float, an int, a ``Fraction`` or ``"30000/1001"`` (NTSC floats snap to
    ``k*1000/1001``, see :func:`lc4.io.as_frame_rate`). ``crf`` is x264's constant quality
    (0 lossless-ish .. 51; 18 is visually transparent). ``pixel_format="yuv420p"`` plays
    everywhere but needs even sizes: an odd width/height is padded by repeating the last
    column/row (``odd_size="pad"``, default) or the last one is dropped (``"crop"``);
    ``"yuv444p"`` keeps odd sizes exactly and full-resolution chroma (less widely played).

    The container follows the suffix: ``.mp4``, ``.mkv`` (Matroska) or ``.mov`` (QuickTime), all
    H.264; any other suffix is a ``ValueError`` (``container=`` names the muxer explicitly).

    ``audio_from``: a media file whose first audio track is copied (AAC, MP3, AC-3, E-AC-3,
    ALAC; MKV also FLAC, Opus, Vorbis, PCM) or transcoded to AAC; source time ``audio_offset``
    seconds (after its video start) lines up with this video's first frame, and the track is cut
    where the video ends.

    ``timestamps``: a :class:`~lc4.io.FrameTimes` (from :func:`lc4.io.frame_times`) giving each
    frame's presentation time, for variable-frame-rate sources: frame ``i`` is shown at
    ``timestamps.seconds(i)`` instead of ``i / fps`` (frames past its end continue with its last
    frame duration). ``fps`` is then only the nominal (average) rate.

    ``threads`` is x264's thread count, fixed (default 4) so that the same frames give the same
    bytes on every machine; the muxer runs bit-exact (no creation time or version tags).

    The file is written to a hidden temporary beside ``path`` and renamed when
    :meth:`close` succeeds; on an exception inside ``with`` (or :meth:`abort`) the temporary is
    removed and ``path`` is untouched. ``path`` must not exist unless ``overwrite``, and must not
    be one of ``inputs`` (``audio_from`` counts as an input).
    """

    def __init__(
        self,
        path: PathLike,
        fps: float | int | str | Fraction = DEFAULT_FPS,
        *,
        crf: int = 18,
        preset: str = "medium",
        pixel_format: Literal["yuv420p", "yuv444p"] = "yuv420p",
        odd_size: Literal["pad", "crop"] = "pad",
        audio_from: PathLike | None = None,
        audio_offset: float = 0.0,
        sample_aspect_ratio: Fraction | None = None,
        overwrite: bool = False,
        inputs: Iterable[PathLike] = (),
        faststart: bool = True,
        timestamps: FrameTimes | None = None,
        threads: int = DEFAULT_THREADS,
        container: str | None = None,
    ) -> None:
        self.frame_rate = as_frame_rate(fps)
        if container is None:
            container = video_container(path)
        elif container not in _COPY_CODECS:
            raise ValueError(f"container must be one of {sorted(_COPY_CODECS)}, got {container!r}")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 64:
            raise ValueError(f"threads must be an integer in [1, 64], got {threads!r}")
        if timestamps is not None and (len(timestamps) == 0 or timestamps.last_duration <= 0):
            raise ValueError("timestamps must hold at least one frame and a positive last duration")
        if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
            raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
        if pixel_format not in _PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {_PIXEL_FORMATS}, got {pixel_format!r}")
        if odd_size not in ("pad", "crop"):
            raise ValueError(f"odd_size must be 'pad' or 'crop', got {odd_size!r}")
        if not math.isfinite(audio_offset) or audio_offset < 0:
            raise ValueError(f"audio_offset must be a non-negative number of seconds, got {audio_offset!r}")
        if audio_from is not None and not Path(audio_from).is_file():
            raise FileNotFoundError(f"{audio_from}: no such file (audio_from)")
        if sample_aspect_ratio is not None and Fraction(sample_aspect_ratio) <= 0:
            raise ValueError(f"sample_aspect_ratio must be positive, got {sample_aspect_ratio!r}")
        self.crf = int(crf)
        self.preset = preset
        self.pixel_format = pixel_format
        self.odd_size = odd_size
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio_offset = float(audio_offset)
        self.sample_aspect_ratio = Fraction(sample_aspect_ratio) if sample_aspect_ratio else None
        self.faststart = faststart
        self.container_format = container
        self.timestamps = timestamps
        self.threads = int(threads)
        all_inputs = [*inputs] + ([self.audio_from] if self.audio_from is not None else [])
        self._atomic = AtomicOutput(path, overwrite=overwrite, inputs=all_inputs)
        self.path = self._atomic.path
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._audio: AudioPassthrough | None = None
        self._input_size: tuple[int, int] | None = None  # (H, W) of the frames given
        self._durations: dict[int, int] = {}  # pts -> duration, source timestamps only
        self.frames_written = 0
        self.closed = False

    # ----------------------------------------------------------------------------------

    @property
    def audio_mode(self) -> str | None:
        """``"copy"``, ``"aac"`` (transcoded) or ``None`` (no audio track written)."""
        return self._audio.mode if self._audio is not None else None

    @property
    def size(self) -> tuple[int, int] | None:
        """Encoded ``(height, width)`` (after even-size handling), known after the first frame."""
        if self._stream is None:
            return None
        return self._stream.codec_context.height, self._stream.codec_context.width

    def _encoded_size(self, height: int, width: int) -> tuple[int, int]:
        if self.pixel_format == "yuv444p":
            return height, width
        if self.odd_size == "pad":
            return height + height % 2, width + width % 2
        return height - height % 2, width - width % 2

    def _open(self, height: int, width: int) -> None:
        if max(height, width) > MAX_DIMENSION:
            raise ValueError(f"frame size {width}x{height} exceeds the H.264 limit of {MAX_DIMENSION} pixels per side")
        eh, ew = self._encoded_size(height, width)
        if eh < 1 or ew < 1:
            raise ValueError(f"frame size {width}x{height} is too small to encode with odd_size='crop'")
        options = {"fflags": "+bitexact"}  # no encoder version tag, creation time or random UIDs
        if self.faststart and self.container_format in ("mp4", "mov"):
            options["movflags"] = "+faststart"
        try:
            container = av.open(str(self._atomic.tmp), mode="w", format=self.container_format, options=options)
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.path}: cannot open for writing ({_short(e)})") from None
        container.metadata.clear()
        self._container = container
        stream = container.add_stream("libx264", rate=self.frame_rate)
        stream.width, stream.height = ew, eh
        stream.pix_fmt = self.pixel_format
        x264_options = {"crf": str(self.crf), "preset": self.preset}
        if (cpu := x264_cpu_setting()) is not None:
            x264_options["x264-params"] = f"asm={cpu}"  # its AVX-512 code is not deterministic
        stream.options = x264_options
        cc = stream.codec_context
        # x264's bitstream depends on its thread count; "auto" would take it from the CPUs available
        cc.thread_type = "FRAME"
        cc.thread_count = self.threads
        cc.flags |= av.codec.context.Flags.bitexact
        if self.timestamps is not None:
            cc.time_base = self.timestamps.time_base
            stream.time_base = self.timestamps.time_base
        cc.colorspace = _AVCOL_BT709
        cc.color_primaries = _AVCOL_BT709
        cc.color_trc = _AVCOL_BT709
        cc.color_range = _AVCOL_RANGE_MPEG
        if self.sample_aspect_ratio is not None and self.sample_aspect_ratio != 1:
            cc.sample_aspect_ratio = self.sample_aspect_ratio
        self._stream = stream
        if self.audio_from is not None:
            self._audio = AudioPassthrough(self.audio_from, container, offset=self.audio_offset,
                                           copy_codecs=_COPY_CODECS[self.container_format])

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        eh, ew = self._encoded_size(h, w)
        if (eh, ew) == (h, w):
            return frame
        if eh <= h and ew <= w:
            return frame[:eh, :ew]
        return np.pad(frame, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")

    def write(self, frames: np.ndarray) -> None:
        """Append one frame ``(H, W, 3)`` or a batch ``(T, H, W, 3)`` of ``uint8`` RGB."""
        if self.closed:
            raise ValueError(f"{self.path}: writer is closed")
        arr = np.asarray(frames)
        if arr.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB (0..255), got dtype {arr.dtype}")
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"frames must be (H, W, 3) or (T, H, W, 3), got shape {arr.shape}")
        size = (int(arr.shape[1]), int(arr.shape[2]))
        if self._input_size is None:
            self._open(*size)
            self._input_size = size
        elif size != self._input_size:
            raise ValueError(
                f"frame size {size[1]}x{size[0]} differs from the first frame's "
                f"{self._input_size[1]}x{self._input_size[0]}"
            )
        assert self._container is not None and self._stream is not None
        try:
            for frame in arr:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(self._prepare(frame)), format="rgb24")
                vf = vf.reformat(
                    format=self.pixel_format,
                    dst_colorspace=Colorspace.ITU709,
                    dst_color_range=ColorRange.MPEG,
                )
                if self.timestamps is not None:
                    vf.pts = self._vfr_pts(self.frames_written)
                    vf.time_base = self.timestamps.time_base
                    self._durations[vf.pts] = self._vfr_pts(self.frames_written + 1) - vf.pts
                else:
                    vf.pts = self.frames_written
                    vf.time_base = 1 / self.frame_rate
                self._mux_video(self._stream.encode(vf))
                self.frames_written += 1
                if self._audio is not None:
                    self._audio.mux_until(self._time(self.frames_written), self._container)
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.path}: cannot encode frame {self.frames_written} ({_short(e)})") from None

    def _mux_video(self, packets: list[av.Packet]) -> None:
        """Mux encoded packets; with source timestamps each carries its frame's own duration, so the
        last frame lasts as long as in the source."""
        assert self._container is not None
        if self.timestamps is not None:
            for packet in packets:
                duration = self._durations.pop(packet.pts, None) if packet.pts is not None else None
                if duration:
                    packet.duration = duration
        self._container.mux(packets)

    def _vfr_pts(self, i: int) -> int:
        """Output pts of frame ``i`` in the source's time base, starting at 0."""
        t = self.timestamps
        assert t is not None
        n = len(t.pts)
        if i < n:
            return t.pts[i] - t.pts[0]
        return t.pts[-1] - t.pts[0] + (i - n + 1) * t.last_duration

    def _time(self, i: int) -> float:
        """Start of frame ``i`` (the end of frame ``i - 1``) in seconds of output time."""
        if self.timestamps is not None:
            return float(self._vfr_pts(i) * self.timestamps.time_base)
        return i / float(self.frame_rate)

    def close(self) -> Path:
        """Flush the encoder, finish the audio, and move the file to its final name."""
        if self.closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written; nothing to save")
        assert self._container is not None and self._stream is not None
        try:
            self._mux_video(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self._time(self.frames_written), self._container)
            self._container.close()
        except av.error.FFmpegError as e:
            self.abort()
            raise ValueError(f"{self.path}: cannot finish writing ({_short(e)})") from None
        except BaseException:
            self.abort()
            raise
        self._container = None
        self.closed = True
        return self._atomic.commit()

    def abort(self) -> None:
        """Stop writing and remove the temporary file; the final path is untouched."""
        self.closed = True
        if self._audio is not None:
            self._audio.close()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is being discarded anyway
                pass
            self._container = None
        self._atomic.discard()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        self.close()

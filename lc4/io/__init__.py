"""Video I/O for lc4: probe, read (whole or streamed), write MP4/MKV/MOV with audio or PNG folders, atomically.

Sources: video files (anything FFmpeg reads, via PyAV), folders of frames (plain or DAVIS
``JPEGImages/480p/<seq>``, natural order) and single images. Frames are ``uint8`` RGB
``(T, H, W, 3)``. See ``docs/io.md``.
"""

from .atomic import AtomicOutput, atomic_output, check_output_path, check_replaceable, foreign_entry
from .audio import MKV_COPY_CODECS, MP4_COPY_CODECS
from .frames import IMAGE_EXTENSIONS, find_frame_files, load_image, natural_key
from .png import write_png_folder
from .probe import DEFAULT_FPS, FrameTimes, VideoInfo, as_frame_rate, frame_times, probe, source_kind
from .progress import io_progress, progress_bar
from .reader import DEFAULT_MAX_BYTES, iter_frames, read_frames
from .writer import DEFAULT_THREADS, UNSUPPORTED_VIDEO_SUFFIXES, VIDEO_CONTAINERS, VideoWriter, video_container

__all__ = [
    "VideoInfo",
    "probe",
    "source_kind",
    "as_frame_rate",
    "DEFAULT_FPS",
    "read_frames",
    "iter_frames",
    "DEFAULT_MAX_BYTES",
    "VideoWriter",
    "write_png_folder",
    "atomic_output",
    "AtomicOutput",
    "check_output_path",
    "check_replaceable",
    "foreign_entry",
    "find_frame_files",
    "load_image",
    "natural_key",
    "IMAGE_EXTENSIONS",
    "MP4_COPY_CODECS",
    "MKV_COPY_CODECS",
    "FrameTimes",
    "frame_times",
    "VIDEO_CONTAINERS",
    "UNSUPPORTED_VIDEO_SUFFIXES",
    "video_container",
    "DEFAULT_THREADS",
    "io_progress",
    "progress_bar",
]

"""Carry the source's audio track into a new MP4/MKV/MOV: stream copy when the container can hold
the codec, otherwise transcode to AAC.

Timing: source time ``video_start + offset`` (``video_start`` = the start time of the source's
video stream) maps to 0 in the output, so audio stays in sync with frame 0 of the output. The
track is cut at the video's end. Both ends are cut at packet/frame granularity (about 21 ms for
AAC): samples are never edited inside a compressed packet.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from .probe import _short, open_video

__all__ = ["AudioPassthrough", "MP4_COPY_CODECS", "MKV_COPY_CODECS"]

#: Audio codecs copied into MP4 (and MOV) bit-exactly; anything else is transcoded to AAC.
MP4_COPY_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})
#: Matroska holds more codecs as they are.
MKV_COPY_CODECS = MP4_COPY_CODECS | frozenset({"flac", "opus", "vorbis", "pcm_s16le", "pcm_s24le", "pcm_f32le"})

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


# Channel layouts FFmpeg's AAC encoder accepts, by channel count (more than 8: down-mixed).
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _nearest_aac_rate(rate: int) -> int:
    return min(_AAC_RATES, key=lambda r: abs(r - rate))


class AudioPassthrough:
    """Audio of ``source`` as a stream of ``output``, muxed incrementally (interleaved with video).

    Codecs in ``copy_codecs`` (what the output container holds as is) are stream-copied; others
    are transcoded to AAC.

    Call :meth:`mux_until` as video is written and :meth:`finish` at the end. ``mode`` says
    what happens: ``"copy"``, ``"aac"`` (transcode) or ``None`` (the source has no audio; then
    every method is a no-op).
    """

    def __init__(
        self,
        source: str | Path,
        output: av.container.OutputContainer,
        offset: float = 0.0,
        aac_bitrate: int = 192_000,
        copy_codecs: frozenset[str] = MP4_COPY_CODECS,
    ) -> None:
        self.source = Path(source)
        self.mode: str | None = None
        self._in_stream = None
        self._out_stream = None
        self._packets = None
        self._pending: av.Packet | None = None
        self._done = False
        self._samples_out = 0
        self._cut = False
        self._resampler: av.AudioResampler | None = None
        ctx = open_video(self.source)
        container = ctx.__enter__()
        self._ctx = ctx
        streams = list(container.streams.audio)
        if not streams:
            self._close_input()
            return
        ia = streams[0]
        self._in_stream = ia
        video = next(iter(container.streams.video), None)
        video_start = 0.0
        if video is not None and video.start_time is not None and video.time_base:
            video_start = float(video.start_time * video.time_base)
        self._t0 = video_start + float(offset)
        audio_start = float(ia.start_time * ia.time_base) if ia.start_time is not None and ia.time_base else 0.0
        # Packets before output time 0 are dropped only where the track is really cut; at the
        # stream's own start they are kept (AAC priming, signalled by negative timestamps).
        self._cut = self._t0 > audio_start + 1e-6
        codec = ia.codec_context.name
        try:
            if codec in copy_codecs:
                self._out_stream = output.add_stream_from_template(ia)
                self.mode = "copy"
            else:
                rate = _nearest_aac_rate(ia.codec_context.sample_rate or 48000)
                layout = _AAC_LAYOUTS.get(ia.codec_context.channels, "stereo")
                stream = output.add_stream("aac", rate=rate, layout=layout)
                stream.bit_rate = aac_bitrate
                stream.codec_context.flags |= av.codec.context.Flags.bitexact  # reproducible bytes
                self._out_stream = stream
                self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
                self.mode = "aac"
        except (av.error.FFmpegError, ValueError) as e:
            self._close_input()
            raise ValueError(f"{self.source}: cannot carry audio track ({codec}) into the output ({_short(e)})") from None
        self._packets = container.demux(ia)

    # ----------------------------------------------------------------------------------

    def _next_packet(self) -> av.Packet | None:
        if self._pending is not None:
            pkt, self._pending = self._pending, None
            return pkt
        assert self._packets is not None
        try:
            for pkt in self._packets:
                if pkt.size == 0 or pkt.pts is None and pkt.dts is None:
                    continue  # flush / empty packets
                return pkt
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.source}: cannot read audio ({_short(e)})") from None
        return None

    def _time(self, pkt: av.Packet) -> float:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        return float(ts * pkt.time_base) - self._t0

    def _emit(self, pkt: av.Packet, output: av.container.OutputContainer) -> None:
        start = self._time(pkt)
        duration = float(pkt.duration * pkt.time_base) if pkt.duration else 0.0
        if self._cut and start + duration <= 0.0:
            return  # entirely before the output's frame 0
        if self.mode == "copy":
            shift = int(round(self._t0 / float(pkt.time_base)))
            if pkt.pts is not None:
                pkt.pts -= shift
            if pkt.dts is not None:
                pkt.dts -= shift
            pkt.stream = self._out_stream
            output.mux(pkt)
            return
        try:
            frames = self._in_stream.decode(pkt)  # type: ignore[union-attr]
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.source}: cannot decode audio ({_short(e)})") from None
        for frame in frames:
            self._encode(frame, output)

    def _encode(self, frame: av.AudioFrame | None, output: av.container.OutputContainer) -> None:
        """Resample to the AAC encoder's fixed frame layout, time by sample count, encode, mux."""
        stream = self._out_stream
        assert stream is not None and self._resampler is not None
        if frame is not None:
            frame.pts = None
        for out in self._resampler.resample(frame):
            out.pts = self._samples_out
            out.time_base = Fraction(1, stream.codec_context.sample_rate)
            self._samples_out += out.samples
            output.mux(stream.encode(out))
        if frame is None:
            output.mux(stream.encode(None))

    def mux_until(self, t: float, output: av.container.OutputContainer) -> None:
        """Mux every audio packet that starts before output time ``t`` (seconds)."""
        if self.mode is None or self._done:
            return
        while True:
            pkt = self._next_packet()
            if pkt is None:
                self._done = True
                return
            if self._time(pkt) >= t:
                self._pending = pkt
                return
            self._emit(pkt, output)

    def finish(self, end: float, output: av.container.OutputContainer) -> None:
        """Mux the rest up to the video's end ``end`` (seconds), flush the encoder, close the source."""
        try:
            if self.mode is not None:
                self.mux_until(end, output)
                if self.mode == "aac":
                    if self._done:  # source exhausted: drain the decoder too
                        for frame in self._in_stream.decode(None):  # type: ignore[union-attr]
                            self._encode(frame, output)
                    self._encode(None, output)
        finally:
            self._close_input()

    def _close_input(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)

    def close(self) -> None:
        """Close the source without muxing more (used when the write is aborted)."""
        self._close_input()

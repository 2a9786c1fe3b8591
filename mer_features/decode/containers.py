"""What a media file's own header declares, read without decoding it, so that a file cut short
(an interrupted download or copy) is told apart from a short recording.

Decoders count only what is there: libsndfile sizes a WAV by the bytes present, decord counts
the packets present. So the declarations are read here directly:

* MP4/MOV (:func:`mp4_declared`): the video track's frame count (``stsz``) and the audio
  track's duration (``mdhd``), from the ``moov`` box; fragmented files (whose index is spread
  over ``moof`` boxes) and other containers declare nothing here;
* WAV (:func:`wav_declared_bytes`): the size of the ``data`` chunk, against the bytes the file
  holds after it.

Only box and chunk headers and the ``moov`` box are read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_MAX_MOOV_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Mp4Declared:
    """What an MP4/MOV index declares; None where it says nothing (or is not MP4)."""

    video_frames: int | None = None
    audio_seconds: float | None = None


def mp4_declared(path: Path) -> Mp4Declared:
    """The first video track's sample count and the first audio track's duration in seconds
    from an MP4/MOV file's ``moov`` box."""
    moov = _moov(path)
    if moov is None:
        return Mp4Declared()
    return Mp4Declared(_video_samples(moov), _audio_seconds(moov))


def _moov(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                header = f.read(16)
                box_size, kind = struct.unpack(">I4s", header[:8])
                header_size = 8
                if box_size == 1:
                    box_size, header_size = struct.unpack(">Q", header[8:16])[0], 16
                elif box_size == 0:
                    box_size = size - offset
                if box_size < header_size or not all(32 <= c < 127 for c in kind):
                    return None  # not an ISO base media file (or a damaged one)
                if offset == 0 and kind not in (b"ftyp", b"moov", b"mdat", b"free", b"skip",
                                                 b"wide"):
                    return None
                if kind == b"moov":
                    if box_size > _MAX_MOOV_BYTES or offset + box_size > size:
                        return None
                    f.seek(offset + header_size)
                    return f.read(box_size - header_size)
                offset += box_size
    except (OSError, struct.error):
        return None
    return None


def _tracks(moov: bytes, handler: bytes):
    """The ``mdia`` boxes of the tracks whose handler is ``handler`` (b"vide", b"soun")."""
    for trak in _children(moov, b"trak"):
        mdia = next(_children(trak, b"mdia"), None)
        if mdia is not None and next(_children(mdia, b"hdlr"), b"")[8:12] == handler:
            yield mdia


def _video_samples(moov: bytes) -> int | None:
    for mdia in _tracks(moov, b"vide"):
        stbl = next((s for minf in _children(mdia, b"minf") for s in _children(minf, b"stbl")),
                    b"")
        for kind in (b"stsz", b"stz2"):
            table = next(_children(stbl, kind), None)
            if table is not None and len(table) >= 12:
                count = struct.unpack(">I", table[8:12])[0]
                return count or None  # 0 in a fragmented file
        return None
    return None


def _audio_seconds(moov: bytes) -> float | None:
    for mdia in _tracks(moov, b"soun"):
        mdhd = next(_children(mdia, b"mdhd"), b"")
        try:
            if mdhd[:1] == b"\x01":  # version 1: 64-bit times
                timescale, duration = struct.unpack(">IQ", mdhd[20:32])
            else:
                timescale, duration = struct.unpack(">II", mdhd[12:20])
        except struct.error:
            return None
        if timescale == 0 or duration in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
            return None  # unknown (a fragmented or streamed file)
        return duration / timescale
    return None


def _children(data: bytes, wanted: bytes):
    """Payloads of the boxes of type ``wanted`` directly inside ``data``."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if size == 1 and offset + 16 <= len(data):
            size, header = struct.unpack(">Q", data[offset + 8:offset + 16])[0], 16
        elif size == 0:
            size = len(data) - offset
        if size < header or offset + size > len(data):
            return
        if kind == wanted:
            yield data[offset + header:offset + size]
        offset += size


def wav_declared_bytes(path: Path) -> tuple[int, int] | None:
    """``(declared, present)``: the byte size a RIFF/WAVE file's ``data`` chunk declares and
    the bytes the file holds after the chunk's header; None when the file is not a plain
    RIFF WAV or declares no size (0 or 0xFFFFFFFF, as streaming writers leave it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            offset = 12
            while offset + 8 <= size:
                f.seek(offset)
                kind, length = struct.unpack("<4sI", f.read(8))
                if kind == b"data":
                    if length in (0, 0xFFFFFFFF):
                        return None
                    return length, size - offset - 8
                offset += 8 + length + (length & 1)
    except (OSError, struct.error):
        return None
    return None

"""A bounded local disk spool for encoded usage events the broker could not take (yet).

Layout: one directory of segment files `seg-<time_ns>-<pid>.spool`. Each record is framed as
`<I length><I crc32><q timestamp_ms><H key length><key><value>`; a torn tail (crash mid-write)
fails its CRC/length check and is skipped, never misread. A process appends to a segment of its
own, holding an exclusive flock on it; closed segments are claimed for replay by whichever process
flocks them first (so a crashed runtime's spool is replayed by the next one on the same dir), and
deleted only once every record in them has been delivered or spooled again.

Events keep their bytes, so a replay carries the same event_id and the pipeline counts it once.
The bound is on bytes in the directory; a record that would pass it is dropped, counted and logged.
`records()` is how many events wait on disk: those of the segments found at start (except one a
live process is still writing), of segments claimed since, and of our own appends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

log = logging.getLogger(__name__)

_SEGMENT_BYTES = 1024 * 1024
_DROP_LOG_EVERY_S = 10.0


@dataclass
class Segment:
    """A claimed segment being replayed: it is deleted when `outstanding` reaches zero."""

    path: Path
    handle: BinaryIO
    outstanding: int = 0
    records: list[tuple[bytes, bytes, int]] = field(default_factory=list)


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.dropped = 0
        self.written = 0
        self._lock = threading.Lock()
        self._writer: BinaryIO | None = None
        self._writer_path: Path | None = None
        self._bytes = self._directory_bytes()
        self._records: dict[Path, int] = {}  # segment -> records in it
        self._count_existing()
        self._last_drop_log = 0.0

    # -- writing ---------------------------------------------------------------------------------

    def append(self, key: bytes, value: bytes, timestamp_ms: int) -> bool:
        """Write one record; False (dropped, counted, logged) if the disk bound is reached."""
        rest = struct.pack("<qH", timestamp_ms, len(key)) + key + value
        frame = struct.pack("<II", len(rest), zlib.crc32(rest)) + rest
        with self._lock:
            if self._bytes + len(frame) > self.max_bytes:
                self._count_drop()
                return False
            try:
                writer = self._open_writer()
                writer.write(frame)
            except OSError as exc:  # disk full, directory gone: counted like the bound
                log.error("tokenfuse spool %s cannot be written: %s", self.directory, exc)
                self._count_drop()
                return False
            self._bytes += len(frame)
            self._records[self._writer_path] = self._records.get(self._writer_path, 0) + 1
            self.written += 1
            if writer.tell() >= _SEGMENT_BYTES:
                self._close_writer()
        return True

    def flush(self) -> None:
        """Push buffered records to the OS (a process exit after this loses nothing)."""
        with self._lock:
            if self._writer is not None:
                self._writer.flush()

    def _open_writer(self) -> BinaryIO:
        if self._writer is None:
            path = self.directory / f"seg-{time.time_ns():020d}-{os.getpid()}.spool"
            writer = open(path, "ab")
            fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
            self._writer, self._writer_path = writer, path
        return self._writer

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()  # releases the flock: the segment may now be replayed
            self._writer = self._writer_path = None

    def _count_drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if self.dropped == 1 or now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            log.error("tokenfuse spool %s is full (%d bytes): %d usage events dropped so far",
                      self.directory, self.max_bytes, self.dropped)

    # -- replaying -------------------------------------------------------------------------------

    def pending(self) -> bool:
        """Are there records on disk, other than a segment some process is still writing?"""
        with self._lock:
            return self._bytes > 0

    def records(self) -> int:
        """Events waiting on disk (see the module docstring for which ones this process knows of)."""
        with self._lock:
            return sum(self._records.values())

    def claim(self) -> Segment | None:
        """The oldest segment no process holds, with its records read; None if there is none. Our
        own write segment is closed and claimed when no other is left (not sooner: under a steady
        spill that would cut it into many small files)."""
        with self._lock:
            for path in sorted(self.directory.glob("seg-*.spool")):
                segment = self._try_claim(path)  # our own open segment is flocked: skipped
                if segment is not None:
                    return segment
            own = self._writer_path
            self._close_writer()
            segment = self._try_claim(own) if own is not None else None
            if segment is None:
                self._bytes = self._directory_bytes()
            return segment

    def _try_claim(self, path: Path) -> Segment | None:
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        if os.fstat(handle.fileno()).st_nlink == 0:  # replayed and deleted by another process
            handle.close()
            return None
        records = list(_read_frames(handle.read(), path))
        self._records[path] = len(records)
        return Segment(path, handle, outstanding=len(records), records=records)

    def release(self, segment: Segment) -> None:
        """Every record of `segment` is delivered or spooled again: delete it."""
        with self._lock:
            size = os.fstat(segment.handle.fileno()).st_size
            segment.path.unlink(missing_ok=True)
            segment.handle.close()
            self._bytes = max(0, self._bytes - size)
            self._records.pop(segment.path, None)

    def close(self) -> None:
        with self._lock:
            self._close_writer()

    def _count_existing(self) -> None:
        """Count the records of the segments already in the directory, except any a live process
        holds (it may still be writing)."""
        for path in self.directory.glob("seg-*.spool"):
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                continue
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                self._records[path] = sum(1 for _ in _frame_spans(handle.read(), path, quiet=True))

    def _directory_bytes(self) -> int:
        total = 0
        for path in self.directory.glob("seg-*.spool"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total


def _frame_spans(data: bytes, path: Path, quiet: bool = False) -> Iterator[tuple[int, int]]:
    """[start, end) of the body of each intact frame; stops at a torn one (logged unless quiet)."""
    pos = 0
    while pos < len(data):
        length, crc = struct.unpack_from("<II", data, pos) if pos + 8 <= len(data) else (0, 0)
        rest = data[pos + 8:pos + 8 + length]
        if length < 10 or len(rest) != length or zlib.crc32(rest) != crc:
            if not quiet:
                log.warning("spool segment %s: torn record at byte %d, %d bytes skipped", path, pos, len(data) - pos)
            return
        yield pos + 8, pos + 8 + length
        pos += 8 + length


def _read_frames(data: bytes, path: Path) -> Iterator[tuple[bytes, bytes, int]]:
    for count, (start, end) in enumerate(_frame_spans(data, path), 1):
        timestamp, key_len = struct.unpack_from("<qH", data, start)
        yield data[start + 10:start + 10 + key_len], data[start + 10 + key_len:end], timestamp
        if count % 32 == 0:
            time.sleep(0.0001)  # let agent threads have the GIL (see reporter._YIELD_EVERY)

"""The SDK's disk spool: records come back as written, torn tails are skipped, the bound drops and
counts, and a segment is replayed by exactly one owner."""

from __future__ import annotations

import logging
import struct

from tokenfuse.sdk.spool import Spool


def fill(spool: Spool, n: int, start: int = 0) -> list[tuple[bytes, bytes, int]]:
    records = [(f"agent-{i % 3}".encode(), f"value-{i}".encode() * 3, 1_700_000_000_000 + i)
               for i in range(start, start + n)]
    for record in records:
        assert spool.append(*record)
    return records


def test_records_come_back_in_order_and_the_segment_is_deleted_on_release(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    written = fill(spool, 100)
    assert spool.pending()
    segment = spool.claim()
    assert segment.records == written and segment.outstanding == 100
    assert spool.claim() is None  # nothing else to claim
    spool.release(segment)
    assert not segment.path.exists() and not spool.pending()


def test_a_new_spool_on_the_same_directory_replays_what_an_earlier_one_left(tmp_path):
    first = Spool(tmp_path, max_bytes=1 << 20)
    written = fill(first, 10)
    first.close()
    second = Spool(tmp_path, max_bytes=1 << 20)
    assert second.pending()
    assert second.claim().records == written


def test_a_torn_tail_is_skipped_not_misread(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    written = fill(spool, 5)
    spool.close()
    (path,) = tmp_path.glob("seg-*.spool")
    with open(path, "ab") as f:
        f.write(struct.pack("<II", 64, 0) + b"abc")  # a frame whose body never made it to disk
    with caplog.at_level(logging.WARNING):
        assert Spool(tmp_path, max_bytes=1 << 20).claim().records == written
    assert "torn record" in caplog.text


def test_the_disk_bound_drops_counts_and_logs(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=4096)
    with caplog.at_level(logging.ERROR):
        kept = sum(spool.append(b"k", b"x" * 100, 1) for _ in range(100))
    assert 0 < kept < 100
    assert spool.dropped == 100 - kept and spool.written == kept
    assert "spool" in caplog.text and "dropped" in caplog.text
    assert sum(p.stat().st_size for p in tmp_path.glob("seg-*.spool")) <= 4096


def test_a_segment_held_by_another_writer_or_replayer_is_not_claimed(tmp_path):
    writer = Spool(tmp_path, max_bytes=1 << 20)
    fill(writer, 3)  # its segment stays open (flocked) while it writes
    other = Spool(tmp_path, max_bytes=1 << 20)
    assert other.claim() is None
    writer.close()
    claimed = other.claim()
    assert claimed is not None and len(claimed.records) == 3
    assert Spool(tmp_path, max_bytes=1 << 20).claim() is None  # held by `other` until released
    other.release(claimed)
    assert list(tmp_path.glob("seg-*.spool")) == []


def test_records_counts_what_waits_on_disk_found_at_start_or_appended_until_released(tmp_path):
    first = Spool(tmp_path, max_bytes=1 << 20)
    fill(first, 7)
    first.close()
    live = Spool(tmp_path, max_bytes=1 << 20)
    fill(live, 4)  # still open: a live writer's segment is its own to count
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.records() == 7
    fill(spool, 5)
    assert spool.records() == 12
    segment = spool.claim()  # the oldest first: not our own open one
    assert len(segment.records) == 7 and spool.records() == 12
    spool.release(segment)
    assert spool.records() == 5
    own = spool.claim()  # nothing older left: our own segment is closed and claimed
    assert len(own.records) == 5
    spool.release(own)
    live.close()
    assert spool.records() == 0
    assert len(spool.claim().records) == 4 and spool.records() == 4  # counted once claimed

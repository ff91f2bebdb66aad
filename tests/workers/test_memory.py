"""What a loaded worker hands back: a mapped file's resident pages (keeping what the mapping reads),
the heap malloc keeps free."""

import mmap
import os
import sys

import pytest

from workers.memory import page_out, trim_heap

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="MADV_PAGEOUT and malloc_trim are Linux's (glibc's)"
)


def resident_kb(path) -> int:
    """This process's resident kB of mappings of `path`, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):
                inside = len(fields) == 6 and fields[5] == str(path)
            elif fields[0] == "Rss:" and inside:
                total += int(fields[1])
    return total


def test_a_mapped_file_is_paged_out_and_still_reads_the_same(tmp_path):
    path = tmp_path / "weights.bin"
    data = os.urandom(16 << 20)
    path.write_bytes(data)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert bytes(mapped) == data  # every page read: resident
        assert resident_kb(path) >= 15 << 10
        assert page_out(path)
        assert resident_kb(path) < 1 << 10
        assert bytes(mapped[: 1 << 20]) == data[: 1 << 20]  # read again from the file
        assert 1 << 10 <= resident_kb(path) < 8 << 10  # what was read (and read ahead) only


def test_a_paged_out_file_brings_back_the_pages_it_reads_and_not_the_ones_around_them(tmp_path):
    """A token-embedding row read in place brings back its page alone: with read-ahead every few
    rows read brought back the whole table. `read_again` keeps read-ahead (a warm-up reads it all)."""
    path = tmp_path / "embeddings.bin"
    data = os.urandom(16 << 20)
    path.write_bytes(data)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        os.fsync(file.fileno())  # clean pages, which the kernel may drop
        stride = 64 << 10  # one byte every 16 pages: 256 pages in all
        for read_again, most_kb in ((False, 2 << 10), (True, 16 << 10)):
            assert bytes(mapped) == data
            assert page_out(path, read_again=read_again)
            assert all(mapped[i] == data[i] for i in range(0, len(data), stride))
            assert resident_kb(path) <= most_kb
        assert resident_kb(path) >= 8 << 10  # with read-ahead: far more than the pages read


def test_a_file_not_mapped_is_left_alone(tmp_path):
    path = tmp_path / "not-mapped.bin"
    path.write_bytes(b"x")
    assert not page_out(path)


def test_the_freed_heap_is_given_back():
    def anonymous_kb() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

    held = [bytearray(4000) for _ in range(20_000)]  # small blocks: malloc's heap, not mmap
    del held[:-1]  # the last one keeps the heap's top in use: only a trim hands the rest back
    before = anonymous_kb()
    trim_heap()
    assert anonymous_kb() < before - 40_000

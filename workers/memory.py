"""Hand back memory a loaded worker holds and no longer uses (Linux, glibc; elsewhere nothing).

- `page_out(path)`: the resident pages of a weights file this process has mapped (MADV_PAGEOUT).
  OpenVINO's CPU plugin maps an IR's .bin, reads all of it while compiling, and copies most of what
  it needs into its own layout; the pages it read stay resident, counted in the worker's RSS,
  though nothing reads most of them again. Paging them out leaves the mapping in place: a page the
  compiled model does read in place (the token-embedding table's rows) comes back from the file
  when used, without read-ahead (MADV_RANDOM): a row brings back its page, not the pages around it
  (the chat worker's file came back +28 MB under a sustained load with read-ahead, +6 without).
  Nothing is lost: the hint only reclaims clean file pages (a copied-on-write page stays, there is
  no swap to put it in). A kernel before 5.4 refuses the hint and nothing changes.
- `trim_heap()`: the heap compiling freed (malloc_trim): graph passes allocate and free a lot, and
  glibc keeps freed pages; the OpenVINO chat worker held 8-34 MB more without it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

MADV_NORMAL, MADV_RANDOM, MADV_PAGEOUT = 0, 1, 21


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if os.path.exists("/proc/self/maps") else None


def _regions(path: Path) -> list[tuple[int, int]]:
    """The address ranges of this process's mappings of `path`, from /proc/self/maps."""
    wanted = str(path.resolve())
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].rstrip("\n") == wanted:
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                found.append((start, end - start))
    return found


def page_out(path: Path, *, read_again: bool = False) -> bool:
    """Ask the kernel to reclaim this process's resident pages of `path`, and to read a page that
    is used again alone, unless all of the file will be read again (`read_again`: with read-ahead,
    as the kernel reads any file); whether it took the hints."""
    libc = _libc()
    if libc is None:
        return False
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    reading = MADV_NORMAL if read_again else MADV_RANDOM
    regions = _regions(path)
    return bool(regions) and all(
        libc.madvise(start, size, MADV_PAGEOUT) == 0 and libc.madvise(start, size, reading) == 0
        for start, size in regions
    )


def trim_heap() -> None:
    """Give the pages malloc holds free back to the system."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc's; musl has none
        libc.malloc_trim(0)

#!/usr/bin/env python3
"""Resident pages of a running binary's executable mappings, by ELF section, and the page-cache folio sizes behind them.

Usage (as root: pagemap hides frame numbers and kpageflags is root-only):
    python3 services/order/scripts/rss_pages.py PID /path/to/the/executable

Why: VmRSS's file part is not the bytes start-up uses. The kernel maps a whole fault-around window (64 KiB) or a
whole large folio per fault, so this prints, per section, how much is resident of how much is mapped, and how big
the folios are (4 KiB pages and 64 KiB windows, or 256 KiB / 1 MiB folios from a freshly written file). See the
order README's start-up section for what it showed.
"""
import collections
import re
import struct
import subprocess
import sys

pid, binary = sys.argv[1], sys.argv[2]
PAGE = 4096
sections = []  # (name, address, size)
for line in subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
    if m and int(m.group(2), 16):
        sections.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))


def section(addr):
    for name, start, size in sections:
        if start <= addr < start + size:
            return name
    return "(between sections)"


mappings = []
with open(f"/proc/{pid}/maps") as f:
    for line in f:
        fields = line.split()
        if len(fields) >= 6 and fields[5].endswith("/" + binary.rsplit("/", 1)[-1]):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            mappings.append((lo, hi))

resident, mapped, folios = collections.Counter(), collections.Counter(), collections.Counter()
with open(f"/proc/{pid}/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as kflags:
    def flags(pfn):
        kflags.seek(pfn * 8)
        return struct.unpack("Q", kflags.read(8))[0]

    for lo, hi in mappings:
        n = (hi - lo) // PAGE
        pagemap.seek(lo // PAGE * 8)
        raw = b""
        while len(raw) < n * 8:  # pagemap may return less than asked
            raw += pagemap.read(n * 8 - len(raw))
        for i, entry in enumerate(struct.unpack(f"{n}Q", raw)):
            name = section(lo + i * PAGE)
            mapped[name] += PAGE
            if not entry >> 63 & 1:  # not present
                continue
            resident[name] += PAGE
            pfn = entry & ((1 << 55) - 1)
            fl = flags(pfn)
            if fl >> 15 & 1:  # head of a compound page (large folio): count its tail pages
                size = 1
                while flags(pfn + size) >> 16 & 1:
                    size += 1
                folios[size * 4] += 1
            elif not fl >> 16 & 1:
                folios[4] += 1

print(f"{'section':22} {'resident KiB':>12} {'mapped KiB':>10}")
for name in sorted(mapped, key=lambda k: -mapped[k]):
    print(f"{name:22} {resident[name] // 1024:12} {mapped[name] // 1024:10}")
print(f"{'total':22} {sum(resident.values()) // 1024:12} {sum(mapped.values()) // 1024:10}")
print("mapped folios by size (KiB: count):", dict(sorted(folios.items())))

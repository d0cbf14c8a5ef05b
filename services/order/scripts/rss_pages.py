#!/usr/bin/env python3
"""Resident pages of a running binary's executable mappings, by ELF section, and the page-cache folio sizes behind them.

Usage (as root: pagemap hides frame numbers and kpageflags is root-only):
    python3 services/order/scripts/rss_pages.py PID /path/to/the/executable
    python3 services/order/scripts/rss_pages.py PID /path/to/the/executable --symbols /path/to/unstripped [--top 20]

Why: VmRSS's file part is not the bytes start-up uses. The kernel maps a whole fault-around window (64 KiB) or a
whole large folio per fault, so this prints, per section, how much is resident of how much is mapped, and how big
the folios are (4 KiB pages and 64 KiB windows, or 256 KiB / 1 MiB folios from a freshly written file). See the
order README's start-up section for what it showed.

With --symbols it also sums the resident bytes per Go package: each symbol of `go tool nm -size` counts the part
of it that lies on resident pages, anonymous (a written data page, .bss) or file-backed apart. The images are
built with -s -w, so name a build of the same source with the same flags but without -s -w (its sections sit at
the same addresses: the check below refuses a pair that does not). That is the question "what would dropping this
dependency save": a package's resident bytes are roughly what leaving it out of the binary gives back, since the
fault-around windows make nearly all of .text and .rodata resident whoever touched them. Bytes no symbol covers
(the pcln tables' padding, alignment) and the pcln tables themselves, which are not per package, are listed apart.
"""
import argparse
import collections
import re
import struct
import subprocess
import sys

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("pid")
ap.add_argument("binary", help="the running executable")
ap.add_argument("--symbols", help="an unstripped build of the same source and flags: adds resident bytes per Go package")
ap.add_argument("--top", type=int, default=20, help="packages to list (default 20)")
args = ap.parse_args()
pid, binary = args.pid, args.binary
PAGE = 4096


def read_sections(path):
    """(name, address, size) of path's sections that are loaded."""
    out = []
    for line in subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16):
            out.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))
    return out


sections = read_sections(binary)


def section(addr):
    for name, start, size in sections:
        if start <= addr < start + size:
            return name
    return "(between sections)"


mappings = []
with open(f"/proc/{pid}/maps") as f:
    for line in f:
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if len(fields) >= 6 and fields[5].endswith("/" + binary.rsplit("/", 1)[-1]):
            mappings.append((lo, hi))
        elif mappings and len(fields) == 5 and lo == mappings[-1][1] and lo < sections[-1][1] + sections[-1][2]:
            # the anonymous rest of .bss and .noptrbss
            mappings.append((lo, hi))

resident, mapped, folios = collections.Counter(), collections.Counter(), collections.Counter()
present = {}  # page address -> "anon" or "file"
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
            present[lo + i * PAGE] = "file" if entry >> 61 & 1 else "anon"  # bit 61: file page (or shared anon)
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


def package(sym):
    """The Go package a linker symbol belongs to: type:*a/b.T, go:itab.*a/b.T,c.I and a/b.(*T).M[...] give a/b."""
    for prefix in ("type:", "go:itab."):
        sym = sym.removeprefix(prefix)
    sym = sym.lstrip("*(")
    if sym.startswith("go:"):  # go:string.*, go:func.*: the linker's pools, no package
        return "(" + sym.split(".", 1)[0] + ")"
    sym = sym.split("[", 1)[0]  # type arguments name other packages
    dot = sym.find(".", sym.rfind("/") + 1)
    return (sym[:dot] if dot > 0 else sym).replace("%2e", ".")  # nm escapes a dot in the last path element


if args.symbols:
    if sections != read_sections(args.symbols):
        sys.exit(f"{args.symbols} does not lay its sections out as {binary} does: not a build of the same source and flags")
    nm = subprocess.run(["go", "tool", "nm", "-size", "-sort", "address", args.symbols], capture_output=True, text=True,
                        check=True).stdout
    by = collections.defaultdict(collections.Counter)  # package -> {"anon"/"file": bytes}
    # The linker lists the type descriptors, the string data and the function descriptors each as one symbol of
    # size 0 at the start of its run: they run to the next symbol, and are shared by all packages.
    blobs = {"type:*": "(type descriptors)", "go:string.*": "(string data)", "go:funcdesc": "(func descriptors)"}
    syms = []
    for line in nm.splitlines():
        f = line.split(None, 3)
        if len(f) < 4 or f[2] in "Uu" or section(int(f[0], 16)) == ".gopclntab":
            continue  # undefined; the pcln tables and funcdata (go:func.*) fill .gopclntab, counted whole
        syms.append((int(f[0], 16), int(f[1]), f[3]))
    counted = collections.Counter()  # section -> resident bytes that some symbol covers
    for i, (addr, size, name) in enumerate(syms):
        if name in blobs:
            later = [a for a, _, _ in syms[i + 1:i + 50] if a > addr]
            size, pkg = (later[0] if later else addr) - addr, blobs[name]
        else:
            pkg = package(name)
        end = addr + size
        while addr < end:  # the part of the symbol on each resident page
            page = addr - addr % PAGE
            step = min(end, page + PAGE) - addr
            if page in present:
                by[pkg][present[page]] += step
                counted[section(page)] += step
            addr += step
    total = sum(resident.values())
    pcln = resident[".gopclntab"]
    uncovered = {name: (resident[name] - counted[name]) // 1024 for name in resident if name != ".gopclntab"}
    print(f"\nresident bytes per Go package (top {args.top}; of {total // 1024} KiB resident: {pcln // 1024} KiB pcln "
          f"tables and funcdata; KiB no symbol covers: {dict(sorted(uncovered.items(), key=lambda kv: -kv[1]))})")
    print(f"{'package':64} {'KiB':>6} {'anon':>6} {'file':>6}")
    for pkg, c in sorted(by.items(), key=lambda kv: -sum(kv[1].values()))[:args.top]:
        print(f"{pkg:64} {sum(c.values()) // 1024:6} {c['anon'] // 1024:6} {c['file'] // 1024:6}")

    # The same per module (what a go.mod line adds), from the module list the binary carries.
    modules = [line.split()[1] for line in subprocess.run(["go", "version", "-m", args.symbols], capture_output=True,
                                                          text=True, check=True).stdout.splitlines()
               if line.split()[:1] in (["dep"], ["mod"])]
    by_module = collections.Counter()
    for pkg, c in by.items():
        owner = max((m for m in modules if pkg == m or pkg.startswith(m + "/")), key=len, default=None)
        by_module[owner or ("std" if not pkg.startswith("(") else pkg)] += sum(c.values())
    print(f"\n{'module':64} {'KiB':>6}")
    for mod, n in by_module.most_common(args.top):
        print(f"{mod:64} {n // 1024:6}")

#!/usr/bin/env python3
"""Random 4 KiB reads at seeded offsets, checked against the server's own copy of the file.

Usage: randread.py pread FILE REF COUNT SEED MAX_SECONDS
           open FILE fresh and os.pread COUNT times at random offsets (timed: open..last read)
       randread.py curl URL REF COUNT SEED MAX_SECONDS NETRC [CURL_CONFIG_LINE...]
           the raw-protocol equivalent: ONE curl process, one `range` per URL (`next` between
           them in a -K config), so the control connection is reused (REST + RETR per read)

REF is the server-side path of the same file (the bench runs next to the server); every block
read is compared with os.pread of REF after the timed part. Stops early after MAX_SECONDS
(slow tools) and reports the reads actually done. Prints "SECONDS READS CONNECT_SECONDS"
(CONNECT_SECONDS: curl's TCP connect + server greeting for the first read, else 0); exit 1 on
a short read or wrong data.
"""
import os
import random
import subprocess
import sys
import tempfile
import time

BLOCK = 4096


def main(argv):
    mode, target, ref, count, seed, max_s = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]), float(argv[6])
    size = os.stat(ref).st_size
    rnd = random.Random(seed)
    offs = [rnd.randrange(0, size - BLOCK) for _ in range(count)]
    got = []
    connect = 0.0
    if mode == "pread":
        t0 = time.monotonic()
        fd = os.open(target, os.O_RDONLY)
        try:
            for off in offs:
                got.append(os.pread(fd, BLOCK, off))
                if time.monotonic() - t0 > max_s:
                    break
        finally:
            os.close(fd)
        dt = time.monotonic() - t0
    elif mode == "curl":
        netrc, extra = argv[7], argv[8:]
        with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as cfg:
            for i, off in enumerate(offs):
                if i:
                    cfg.write("next\n")
                cfg.write('url = "%s"\nrange = "%d-%d"\noutput = "-"\nwrite-out = "%%{stderr}%%{time_connect}\\n"\n'
                          % (target, off, off + BLOCK - 1))
                cfg.write('netrc-file = "%s"\n' % netrc)
                for line in extra:  # config lines, e.g. ssl-reqd / cacert = "FILE"
                    cfg.write(line + "\n")
        try:
            t0 = time.monotonic()
            r = subprocess.run(["curl", "-sS", "-K", cfg.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=max_s + 600)
            dt = time.monotonic() - t0
        finally:
            os.unlink(cfg.name)
        if r.returncode != 0:
            sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
            sys.exit("curl failed: rc=%d" % r.returncode)
        data = r.stdout
        got = [data[i:i + BLOCK] for i in range(0, len(data), BLOCK)]
        lines = r.stderr.decode(errors="replace").split()
        try:
            connect = float(lines[0])
        except (IndexError, ValueError):
            connect = 0.0
    else:
        sys.exit("unknown mode " + mode)
    # check every block against the server's copy (not timed)
    rfd = os.open(ref, os.O_RDONLY)
    try:
        for off, blk in zip(offs, got):
            if blk != os.pread(rfd, BLOCK, off):
                sys.exit("wrong data at offset %d (%d bytes read)" % (off, len(blk)))
    finally:
        os.close(rfd)
    if not got:
        sys.exit("no reads completed")
    print("%.6f %d %.6f" % (dt, len(got), connect))


if __name__ == "__main__":
    main(sys.argv)

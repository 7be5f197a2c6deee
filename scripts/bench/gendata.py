#!/usr/bin/env python3
"""Generate the bench data set (small files, big-dir files, tree) and its md5 manifests.

Usage: gendata.py small DIR COUNT SIZE SEED   -> DIR/sNNNNN files, prints md5sum-format lines
       gendata.py dir DIR COUNT               -> DIR/fNNNNN (empty files), prints nothing
       gendata.py tree DIR COUNT SEED         -> DIR/dNN/... files of 1 KiB..128 KiB, prints md5 lines

md5 lines are "HASH  RELPATH" sorted by path, the format `md5sum` prints, so a copy can be
checked with `cd COPY && md5sum -c` or by comparing sorted output. Standard library only.
"""
import hashlib
import os
import random
import sys


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.md5(data).hexdigest()


def small(d, count, size, seed):
    rnd = random.Random(seed)
    os.makedirs(d, exist_ok=True)
    out = []
    for i in range(count):
        name = "s%05d" % i
        out.append((name, write(os.path.join(d, name), rnd.randbytes(size))))
    return out


def bigdir(d, count):
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        open(os.path.join(d, "f%05d" % i), "wb").close()
    return []


def tree(d, count, seed):
    rnd = random.Random(seed)
    out = []
    # ~count/20 directories, two levels, sizes log-uniform 1 KiB .. 128 KiB
    ndirs = max(1, count // 20)
    for i in range(count):
        top = "d%02d" % (i % ndirs)
        sub = os.path.join(top, "sub%d" % (i % 2)) if i % 3 == 0 else top
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        size = int(1024 * 2 ** rnd.uniform(0, 7))
        rel = os.path.join(sub, "file%04d.dat" % i)
        out.append((rel, write(os.path.join(d, rel), rnd.randbytes(size))))
    return out


def main(argv):
    kind = argv[1]
    if kind == "small":
        res = small(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    elif kind == "dir":
        res = bigdir(argv[2], int(argv[3]))
    elif kind == "tree":
        res = tree(argv[2], int(argv[3]), int(argv[4]))
    else:
        sys.exit("unknown kind " + kind)
    for rel, h in sorted(res):
        print("%s  %s" % (h, rel))


if __name__ == "__main__":
    main(sys.argv)

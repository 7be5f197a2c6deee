#!/usr/bin/env python3
"""Record real-world FTP replies from the test bed servers, for the parser tests.

For each main server (vsftpd, proftpd, pure-ftpd) this makes a sample directory in the
server's root (a file, a directory, a symlink, a name with spaces, a UTF-8 name, with fixed
mtimes: some older than six months so LIST shows a year, some recent so it shows a time),
then speaks raw FTP (plain, passive) and writes into OUT/<server>/:

  welcome.txt   the 220 greeting             feat.txt   the FEAT reply
  list.txt      LIST of the directory        list-a.txt LIST -a of it
  mlsd.txt      MLSD of it (if FEAT has MLST) mlst.txt  MLST of the file (if supported)
  session.txt   the whole control transcript (PASS hidden)

Bytes are stored exactly as received (CRLF line ends, UTF-8 names). Usage:
  capture.py --env /run/ftpfs-testbed/env --out tests/fixtures/servers
"""
import argparse
import calendar
import os
import shutil
import socket
import time

SERVERS = ["vsftpd", "proftpd", "pure-ftpd"]
TIMEOUT = 10


def read_env(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            env[k] = v.strip('"')
    return env


def make_sample(root, uid, gid):
    d = os.path.join(root, "fixture")
    if os.path.lexists(d):
        shutil.rmtree(d)
    os.mkdir(d)
    now = time.time()
    old = calendar.timegm((2019, 3, 4, 5, 6, 7, 0, 0, 0))
    leap = calendar.timegm((2024, 2, 29, 12, 0, 0, 0, 0, 0))
    files = [
        ("plain.txt", b"hello world\n", old),
        ("file with spaces.txt", b"spaces\n" * 100, now - 86400),
        ("h\u00e9llo w\u00f6rld \u2603.txt", "UTF-8 \u2603\n".encode(), leap),
        (".hidden", b"dot\n", now - 3600),
    ]
    for name, data, mtime in files:
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        os.chown(p, uid, gid)
        os.utime(p, (mtime, mtime))
    sub = os.path.join(d, "subdir")
    os.mkdir(sub)
    os.chown(sub, uid, gid)
    os.utime(sub, (old, old))
    link = os.path.join(d, "link-to-plain")
    os.symlink("plain.txt", link)
    os.lchown(link, uid, gid)
    os.chown(d, uid, gid)
    return d


class Ftp:
    def __init__(self, host, port):
        self.host = host
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.f = self.sock.makefile("rb")
        self.log = []

    def reply(self):
        lines = [self.f.readline()]
        first = lines[0]
        if len(first) >= 4 and first[3:4] == b"-":
            code = first[:3]
            while True:
                line = self.f.readline()
                if not line:
                    break
                lines.append(line)
                if line[:3] == code and line[3:4] == b" ":
                    break
        raw = b"".join(lines)
        self.log.extend(b"< " + line for line in lines)
        return int(first[:3] or b"0"), raw

    def cmd(self, line, hide=False):
        self.log.append(b"> " + (b"PASS ****" if hide else line.encode()) + b"\r\n")
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def pasv_data(self, line):
        code, raw = self.cmd("PASV")
        if code != 227:
            raise RuntimeError(f"PASV: {raw!r}")
        nums = raw[raw.index(b"(") + 1 : raw.index(b")")].split(b",")
        port = int(nums[4]) * 256 + int(nums[5])
        data = socket.create_connection((self.host, port), timeout=TIMEOUT)  # peer IP, not reply's
        code, raw = self.cmd(line)
        if code not in (125, 150):
            data.close()
            return code, raw, None
        chunks = []
        while True:
            b = data.recv(65536)
            if not b:
                break
            chunks.append(b)
        data.close()
        code, raw2 = self.reply()
        return code, raw + raw2, b"".join(chunks)


def capture(env, name, out):
    v = name.upper().replace("-", "_")
    host = env.get("FTPFS_TEST_HOST", "127.0.0.1")
    port = int(env[f"{v}_PORT"])
    root = env[f"{v}_ROOT"]
    uid, gid = int(env["FTPFS_TEST_UID"]), int(env["FTPFS_TEST_GID"])
    sample = make_sample(root, uid, gid)
    dest = os.path.join(out, name)
    os.makedirs(dest, exist_ok=True)

    def save(fname, data):
        with open(os.path.join(dest, fname), "wb") as f:
            f.write(data)

    try:
        ftp = Ftp(host, port)
        _, welcome = ftp.reply()
        save("welcome.txt", welcome)
        ftp.cmd("USER " + env["FTPFS_TEST_USER"])
        code, raw = ftp.cmd("PASS " + env["FTPFS_TEST_PASSWORD"], hide=True)
        if code != 230:
            raise RuntimeError(f"{name}: login failed: {raw!r}")
        code, feat = ftp.cmd("FEAT")
        save("feat.txt", feat)
        ftp.cmd("OPTS UTF8 ON")
        ftp.cmd("TYPE I")
        ftp.cmd("PWD")
        ftp.cmd("CWD /fixture")
        for fname, command in (("list.txt", "LIST"), ("list-a.txt", "LIST -a")):
            code, raw, data = ftp.pasv_data(command)
            if data is None:
                raise RuntimeError(f"{name}: {command}: {raw!r}")
            save(fname, data)
        if b"MLST" in feat.upper():
            code, raw, data = ftp.pasv_data("MLSD")
            if data is not None:
                save("mlsd.txt", data)
            code, raw = ftp.cmd("MLST plain.txt")
            if code == 250:
                save("mlst.txt", raw)
        ftp.cmd("SIZE plain.txt")
        ftp.cmd("MDTM plain.txt")
        ftp.cmd("SIZE nonexistent")
        ftp.cmd("QUIT")
        save("session.txt", b"".join(ftp.log))
        print(f"captured {name} -> {dest}: {sorted(os.listdir(dest))}")
    finally:
        shutil.rmtree(sample, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="/run/ftpfs-testbed/env")
    ap.add_argument("--out", required=True)
    ap.add_argument("servers", nargs="*", default=SERVERS)
    args = ap.parse_args()
    env = read_env(args.env)
    for name in args.servers:
        capture(env, name, args.out)


if __name__ == "__main__":
    main()

"""Runs `tollgate hash-password` on a pseudo-terminal, as a person at a terminal would: waits for
each prompt, types a line and Enter (never Ctrl-D), then prints everything the terminal showed.

usage: pty_hash_password.py TOLLGATE FIRST SECOND
"""
import os
import pty
import select
import sys
import termios
import time

binary, first, second = sys.argv[1], sys.argv[2], sys.argv[3]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "hash-password"])

shown = b""


def read_until(token, timeout=20):
    global shown
    end = time.time() + timeout
    while (token is None or token not in shown) and time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            shown += data


def type_line(line):
    # A person types after the prompt is up; wait (a little) for the program to turn echo off
    # so that the check below is about the program, not about a race with it.
    end = time.time() + 2
    while time.time() < end and termios.tcgetattr(fd)[3] & termios.ECHO:
        time.sleep(0.02)
    os.write(fd, line.encode() + b"\r")


read_until(b"Password: ", 10)
type_line(first)
read_until(b"Again: ", 10)
type_line(second)
read_until(None)
end = time.time() + 5
done, status = os.waitpid(pid, os.WNOHANG)
while done == 0 and time.time() < end:
    time.sleep(0.05)
    done, status = os.waitpid(pid, os.WNOHANG)
if done == 0:
    # Still waiting for input (say, for Ctrl-D): that is a failure, not a hang.
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    sys.stdout.write(shown.decode(errors="replace") + "\n[still running after Enter]\n")
    sys.exit(3)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))

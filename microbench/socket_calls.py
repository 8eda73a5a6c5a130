"""Per-call cost of ``recv`` of already-buffered data and ``send`` into free buffer space,
tcpfast.socket beside the kernel's socket.socket, measured side by side in one run (issue 5).

    sudo python microbench/socket_calls.py [--rounds 5]

Runs in a private network namespace it creates and removes. For each size (64 B, 4 KiB,
64 KiB): the receiving socket's buffer is filled by a kernel peer first, then ``recv(size)`` is
timed over the buffered bytes; ``send(size)`` is timed into a send buffer with room for all of
it. The kernel's figure uses a kernel socket pair over the namespace's loopback; tcpfast's a
tcpfast socket on a stack whose peer is a kernel socket. Reports the median per call and the
ratio tcpfast / kernel (target: <= 1.0). Nothing here is a test; no figure is asserted.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

SIZES = (64, 4096, 65536)
BUFFER = 4 * 1024 * 1024


def _pair_kernel():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
    a.connect(lst.getsockname())
    b, _ = lst.accept()
    lst.close()
    return a, b


def _pair_tcpfast(stack):
    lst = socket.socket()
    lst.bind(("198.18.0.1", 0))
    lst.listen()
    a = stack.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER // 2)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER // 2)
    a.connect(lst.getsockname())
    b, _ = lst.accept()
    lst.close()
    return a, b


def _time_recv(a, b, size, total):
    """Fill a's receive buffer with ``total`` bytes from b, then time recv(size) calls."""
    payload = b"x" * total
    b.sendall(payload)
    deadline = time.monotonic() + 10
    # Wait until everything is buffered at a (peek until the whole amount is there).
    while time.monotonic() < deadline:
        if len(a.recv(total, socket.MSG_PEEK)) >= total:
            break
        time.sleep(0.001)
    calls = total // size
    t0 = time.perf_counter()
    for _ in range(calls):
        a.recv(size)
    return (time.perf_counter() - t0) / calls


def _time_send(a, b, size, total):
    data = b"y" * size
    calls = total // size
    t0 = time.perf_counter()
    for _ in range(calls):
        a.send(data)
    elapsed = (time.perf_counter() - t0) / calls
    got = 0
    b.settimeout(10)
    while got < calls * size:
        got += len(b.recv(1 << 20))
    return elapsed


def measure(rounds):
    import tcpfast

    results = {}
    with tcpfast.Stack("198.18.0.2/24", kernel_address="198.18.0.1", ifname="tcpfb0") as stack:
        for size in SIZES:
            total = min(BUFFER // 4, size * 2000)
            for impl in ("kernel", "tcpfast"):
                for op in ("recv", "send"):
                    samples = []
                    for _ in range(rounds):
                        a, b = _pair_kernel() if impl == "kernel" else _pair_tcpfast(stack)
                        with a, b:
                            a.settimeout(10)
                            b.settimeout(10)
                            fn = _time_recv if op == "recv" else _time_send
                            samples.append(fn(a, b, size, total))
                    results[(op, size, impl)] = statistics.median(samples)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        if os.geteuid() != 0:
            sys.exit("socket_calls.py needs root (network namespace and TUN device)")
        ns = f"tcpfsc-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            return subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__,
                                   "--inside", "--rounds", str(args.rounds)]).returncode
        finally:
            subprocess.run(["ip", "netns", "del", ns])
    res = measure(args.rounds)
    print(f"{'call':<12} {'kernel':>10} {'tcpfast':>10} {'ratio':>7}")
    for op in ("recv", "send"):
        for size in SIZES:
            k, t = res[(op, size, "kernel")], res[(op, size, "tcpfast")]
            print(f"{op}({size:>5})  {k * 1e6:8.2f}us {t * 1e6:8.2f}us {t / k:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

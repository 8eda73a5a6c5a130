"""Fixtures for the tests marked ``tun``: a private network namespace per test run, and stacks in it.

Without root (or /dev/net/tun, or iproute2) those tests skip with the reason, except under CI
(environment variable ``CI`` set), where they fail: there they must run.
"""
import os

import pytest

from tcpfast import netns

STACK_IP, KERNEL_IP, PREFIX = "198.18.0.2", "198.18.0.1", 24
STACK_IP6, KERNEL_IP6, PREFIX6 = "fd00:18::2", "fd00:18::1", 64
IFNAME = "tcpf0"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"TUN tests must run under CI, but cannot: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ns():
    """The name of a private network namespace, created for this run and removed after it."""
    reason = netns.unavailable()
    if reason:
        _unavailable(reason)
    netns.remove_stale("tcpf-")
    name = f"tcpf-{os.getpid()}"
    try:
        netns.create(name)
    except Exception as exc:  # noqa: BLE001 - whatever pyroute2 raises, the reason is the message
        _unavailable(f"cannot create a network namespace: {exc!r}")
    try:
        yield name
    finally:
        netns.remove(name)
    assert name not in netns.listed(), f"namespace {name} still listed after removal"


@pytest.fixture
def in_ns(ns):
    """Run the test's thread (and every thread it starts) inside the namespace."""
    with netns.inside(ns):
        yield ns


@pytest.fixture
def make_stack(in_ns):
    """make_stack(**options) -> a started tcpfast.Stack on tcpf0 inside the namespace, with the
    test addresses; every stack made is stopped at teardown, also when the test fails."""
    import tcpfast

    made = []

    def make(*, v6: bool = False, **options):
        kwargs = dict(kernel_address=KERNEL_IP, ifname=IFNAME, mtu=1500, offload=False)
        if v6:
            kwargs.update(address6=f"{STACK_IP6}/{PREFIX6}", kernel_address6=KERNEL_IP6)
        kwargs.update(options)
        stack = tcpfast.Stack(f"{STACK_IP}/{PREFIX}", **kwargs)
        made.append(stack)
        stack.start()
        # The rule of these tests: the device exists inside the namespace, not outside it.
        assert kwargs["ifname"] in netns.links(in_ns, "tun")
        assert kwargs["ifname"] not in netns.origin_links()
        return stack

    yield make
    for stack in reversed(made):
        stack.stop()


@pytest.fixture
def stack(make_stack):
    """A started stack with the default options and IPv6 addresses."""
    return make_stack(v6=True)


@pytest.fixture(scope="session")
def privileged():
    """For tests that make namespaces of their own (``tcpfast bench``, ``tcpfast up``): skip
    without the privilege, fail under CI."""
    reason = netns.unavailable()
    if reason:
        _unavailable(reason)


"""The compiled core must be what runs: no module may silently load as pure Python.

Fails when tcpfast is imported from an unbuilt source tree, or when a facade module re-exports
something other than the compiled functions.
"""
import importlib
import importlib.machinery
import types

import pytest

import pathlib

import tcpfast

# Every .pyx shipped with the package (the runtime's and tcpfast.testing's) must have been compiled
# and must load as an extension (setup.py builds each one it finds); the core ones are named so
# that they cannot go missing.
_ROOT = pathlib.Path(tcpfast.__file__).parent
SHIPPED = sorted(".".join(("tcpfast",) + p.relative_to(_ROOT).with_suffix("").parts)
                 for pkg in (_ROOT, _ROOT / "testing") for p in pkg.glob("*.pyx"))
CORE = [f"tcpfast.{name}" for name in ("_checksum", "_seq", "_wire", "_wire_convert", "_wire_views",
                                       "_ring", "_isn", "_ranges", "_rtx", "_cc", "_tcb")] + \
    ["tcpfast.testing._simlink", "tcpfast.testing._scoreboard"]
COMPILED = sorted(set(SHIPPED) | set(CORE))


def test_core_sources_are_shipped():
    assert set(CORE) <= set(SHIPPED), f"missing .pyx sources: {set(CORE) - set(SHIPPED)}"


@pytest.mark.parametrize("name", COMPILED)
def test_module_is_a_compiled_extension(name):
    mod = importlib.import_module(name)
    assert mod.__file__ is not None
    assert mod.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), mod.__file__
    assert isinstance(mod.__spec__.loader, importlib.machinery.ExtensionFileLoader)


# facade -> {compiled module: the functions the facade re-exports from it}
FACADES = {
    "tcpfast.checksum": {"tcpfast._checksum": ["ones_complement_sum", "combine", "checksum",
                                               "pseudo_header_sum_ipv4", "pseudo_header_sum_ipv6",
                                               "update16", "update32"]},
    "tcpfast.seq": {"tcpfast._seq": ["lt", "le", "gt", "ge", "between", "in_window", "add", "sub",
                                     "max", "min"]},
    "tcpfast.wire": {"tcpfast._wire": ["check_packet", "reason_description"],
                     "tcpfast._wire_convert": ["parse_packet", "parse_ipv4", "parse_ipv6",
                                               "parse_tcp", "parse_icmp", "packet_len",
                                               "emit_packet", "build_packet"]},
}


@pytest.mark.parametrize("facade", sorted(FACADES))
def test_facade_reexports_compiled_functions(facade):
    mod = importlib.import_module(facade)
    for core_name, names in FACADES[facade].items():
        core = importlib.import_module(core_name)
        for name in names:
            fn = getattr(mod, name)
            assert fn is getattr(core, name), name
            # A compiled function, not one defined in Python source.
            assert not isinstance(fn, types.FunctionType), name


def test_wire_classes_come_from_the_compiled_module():
    import tcpfast
    from tcpfast import _wire, _wire_views, wire
    for name in ("Reason", "WireError"):
        assert getattr(wire, name) is getattr(_wire, name), name
    for name in ("IPv4View", "IPv6View", "TCPView", "ICMPView"):
        assert getattr(wire, name) is getattr(_wire_views, name), name
    assert tcpfast.WireError is _wire.WireError
    assert issubclass(wire.WireError, ValueError)
    for name in ("IPv4View", "IPv6View", "TCPView", "ICMPView"):
        assert getattr(wire, name).__module__ == "tcpfast._wire_views"

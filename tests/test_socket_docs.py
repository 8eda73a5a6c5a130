"""Every public method of tcpfast.socket has a docstring that opens with its signature line, as
CPython's Lib/socket.py writes them (``recv(buffersize[, flags]) -> data``)."""
import importlib
import inspect

import pytest

tsocket = importlib.import_module("tcpfast.socket")   # the module (tcpfast.socket is the class)

METHODS = sorted(name for name, member in vars(tsocket.socket).items()
                 if not name.startswith("_") and inspect.isfunction(member))
FUNCTIONS = ["create_connection", "create_server", "has_dualstack_ipv6"]


@pytest.mark.parametrize("name", METHODS)
def test_method_docstring_opens_with_its_signature(name):
    doc = inspect.getdoc(getattr(tsocket.socket, name))
    assert doc, f"socket.{name} has no docstring"
    assert doc.splitlines()[0].startswith(name + "("), doc.splitlines()[0]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_docstring_opens_with_its_signature(name):
    doc = inspect.getdoc(getattr(tsocket, name))
    assert doc and doc.splitlines()[0].startswith(name + "("), doc


def test_properties_are_documented():
    for name, member in vars(tsocket.socket).items():
        if isinstance(member, property):
            assert member.__doc__, name

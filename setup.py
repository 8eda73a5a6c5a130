"""Build script for the compiled core of tcpfast.

Environment switches (read at build time):

``TCPFAST_ANNOTATE=1``
    Write Cython's annotated HTML (``.html``) beside each ``.pyx``: yellow lines are
    where generated C calls into the Python C-API.
``TCPFAST_LINETRACE=1``
    Compile with Cython line tracing (``linetrace=True`` and ``CYTHON_TRACE_NOGIL=1``) so that
    coverage.py and profilers see ``.pyx`` lines. Much slower: for profiling and coverage only.
``TCPFAST_DEBUG=1``
    Build with ``-O0 -g`` and Cython's bounds and wraparound checks turned back on.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


ANNOTATE = _flag("TCPFAST_ANNOTATE")
LINETRACE = _flag("TCPFAST_LINETRACE")
DEBUG = _flag("TCPFAST_DEBUG")

# One extension per .pyx (each with a .pxd that declares its C-level API), in the runtime package and
# in tcpfast.testing (the test machinery, which the runtime never imports). tests/test_compiled.py
# checks that every one of them was built and loads as a compiled module.
PACKAGES = ("tcpfast", "tcpfast/testing")
MODULES = sorted(p[:-4].replace(os.sep, ".") for pkg in PACKAGES
                 for p in glob.glob(os.path.join(pkg, "*.pyx")))

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
macros = []
if LINETRACE:
    directives.update(linetrace=True, binding=True, profile=True)
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        name,
        [name.replace(".", "/") + ".pyx"],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=ANNOTATE or LINETRACE,
    ),
)

"""nogil_annotate_check.py [HTML_DIR] -- no Python C-API call in the compiled core's nogil functions.

Reads the annotated HTML that ``TCPFAST_ANNOTATE=1 python setup.py build_ext --inplace --force``
writes beside each ``.pyx`` under ``tcpfast/`` and each file one includes (``tcpfast/_engine/*.pxi``,
which Cython annotates in pages of their own), so with the build's own directives; finds every
function declared ``nogil`` (the per-packet path: segment in, segment out, timers, rings, ranges,
RACK, congestion control, the engine's loop) and reports the highest annotation score of its lines.
Cython scores a line by the Python C-API calls its C makes; 0 means none. Exits 1 if any nogil
function has a line that calls into the C-API, 2 if there is no annotation to read.
"""
import html
import pathlib
import re
import sys

LINE = re.compile(r'class="cython line score-(\d+)"[^>]*>.{0,3}<span class="">(\d+)</span>')
DEF = re.compile(r"^(\s*)cdef\s+(?:inline\s+)?[\w*]+\s+(\w+)\(")


def nogil_functions(source: list):
    """(name, first line, last line) of each ``cdef ... nogil:`` function (1-based lines)."""
    i = 0
    while i < len(source):
        m = DEF.match(source[i])
        if m:
            j, sig = i, source[i]
            while not sig.rstrip().endswith(":") and j + 1 < len(source):
                j += 1
                sig += source[j]
            if "nogil" in sig and "with gil" not in sig:
                indent = len(m.group(1))
                k = j + 1
                while k < len(source) and (not source[k].strip() or
                                           len(source[k]) - len(source[k].lstrip()) > indent):
                    k += 1
                yield m.group(2), i + 1, k
                i = k
                continue
        i += 1


def main(argv: list) -> int:
    root = pathlib.Path(argv[0] if argv else pathlib.Path(__file__).resolve().parents[1] / "tcpfast")
    pages = sorted(root.rglob("*.html"))
    if not pages:
        print(f"no annotated HTML in {root}: build with TCPFAST_ANNOTATE=1 first", file=sys.stderr)
        return 2
    checked, bad = 0, []
    for page in pages:
        # The page of a module (.pyx) or of a file a module includes (.pxi).
        pyx = page.with_suffix(".pyx")
        if not pyx.exists():
            pyx = page.with_suffix(".pxi")
        if not pyx.exists():
            continue
        scores = {int(n): int(s) for s, n in LINE.findall(html.unescape(page.read_text()))}
        for name, first, last in nogil_functions(pyx.read_text().splitlines()):
            checked += 1
            lines = [n for n in range(first, last + 1) if scores.get(n, 0) > 0]
            if lines:
                bad.append(f"{pyx.relative_to(root)}:{name} lines {lines}")
    print(f"{checked} nogil functions in {len(pages)} modules; calling the Python C-API: {len(bad)}")
    for b in bad:
        print("  " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

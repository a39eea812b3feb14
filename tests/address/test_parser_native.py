"""Loading the parser's compiled kernels must not change floating-point behaviour of the process.

GCC < 13 links crtfastmath.o into a shared library built with -ffast-math; its constructor sets
flush-to-zero/denormals-are-zero (MXCSR) on load, so subnormal numbers silently become 0 in every
later computation of the process (hypothesis refused to generate floats after that).
"""
import subprocess
import sys

SCRIPT = r"""
import sys
from gridserver.address.parser import native
tiny = sys.float_info.min
before = (tiny / 2 > 0.0, 5e-324 * 1.0 > 0.0)
lib = native.library()
after = (tiny / 2 > 0.0, 5e-324 * 1.0 > 0.0)
print(lib is not None, before, after)
"""


def test_loading_the_native_kernels_keeps_subnormals():
    # a fresh process: the library is loaded for the first time there
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True", "the C kernels did not load (is a C compiler installed?)"
    assert " ".join(out[1:]) == "(True, True) (True, True)", out

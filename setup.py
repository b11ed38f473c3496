"""Build script: compiles every Cython kernel under ext/.

Each ``ext/fastpost/<pkg>/<name>.pyx`` becomes the extension module
``fastpost.<pkg>.<name>``: the directory tree mirrors the import path so that
Cython finds the matching ``.pxd`` by its dotted name (a flat ``ext/`` makes
Cython silently ignore the ``.pxd``).

Environment:
    FASTPOST_DEBUG=1   line tracing, annotated HTML, CYTHON_TRACE (slow; for profiling)

Extensions are mandatory: fastpost refuses to start without them (see
fastpost/_accel.py), so a failed compile fails the build loudly.
"""

import os
import pathlib

from setuptools import Extension, setup

HERE = pathlib.Path(__file__).parent

#: System libraries a kernel links with (its -dev package is installed by ./dev).
LIBRARIES = {
    "fastpost.mail.maps._pcre2_c": ["pcre2-8"],  # libpcre2-dev: the PCRE Postfix uses
}


def kernel_extensions():
    """Return one Extension per .pyx file under ext/, named after its path."""
    from Cython.Build import cythonize

    debug = os.environ.get("FASTPOST_DEBUG") == "1"
    exts = []
    for pyx in sorted((HERE / "ext").rglob("*.pyx")):
        rel = pyx.relative_to(HERE / "ext").with_suffix("")
        exts.append(
            Extension(
                ".".join(rel.parts),
                [str(pyx.relative_to(HERE))],
                extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
                define_macros=[("CYTHON_TRACE", "1")] if debug else [],
                libraries=LIBRARIES.get(".".join(rel.parts), []),
            )
        )
    directives = {"language_level": "3", "embedsignature": True}
    if debug:
        directives["linetrace"] = True
    return cythonize(
        exts,
        include_path=["ext"],
        compiler_directives=directives,
        annotate=debug,
        quiet=True,
    )


setup(ext_modules=kernel_extensions(), package_dir={"": "src"})

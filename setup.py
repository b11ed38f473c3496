"""Build script: compiles every Cython kernel under ext/.

Each ``ext/fastpost/<pkg>/<name>.pyx`` becomes the extension module
``fastpost.<pkg>.<name>``: the directory tree mirrors the import path so that
Cython finds the matching ``.pxd`` by its dotted name (a flat ``ext/`` makes
Cython silently ignore the ``.pxd``).

Pure-Python mode (one source for the kernel and its twin): an
``ext/fastpost/<pkg>/_<name>_c.pxd`` with no ``.pyx`` beside it declares that the
extension ``fastpost.<pkg>._<name>_c`` is compiled from the twin itself,
``src/fastpost/<pkg>/_<name>_py.py``, typed by that augmenting ``.pxd`` (Cython finds
it by the extension's dotted name through the ``ext`` include path). The interpreter
keeps importing the ``.py`` under its own name, so nothing shadows anything
(docs/conventions.md, "Kernels in Cython's pure-Python mode").

Environment:
    FASTPOST_DEBUG=1   line tracing, annotated HTML, CYTHON_TRACE (slow; for profiling)
    FASTPOST_NO_EXT=1  declare no extensions: ``./dev`` sets it for ``pip install -e``,
                       which would otherwise compile every kernel one at a time, and then
                       compiles them once itself with ``build_ext --inplace -j 2``

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
    "fastpost.mail.queue._qframe_c": ["z"],  # zlib1g-dev: zlib's crc32, as zlib.crc32
}


def _pxd_closure(ext, pxd):
    """``pxd`` and every .pxd under ``ext`` it cimports, directly or not."""
    seen = {pxd}
    todo = [pxd]
    while todo:
        for line in todo.pop().read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("from", "cimport") and words[1].startswith("fastpost."):
                dep = ext.joinpath(*words[1].split(".")).with_suffix(".pxd")
                if dep.exists() and dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
    return seen


def kernel_sources():
    """Yield (module name, source path, extra dependencies) for every kernel under ext/."""
    ext = HERE / "ext"
    for pyx in sorted(ext.rglob("*.pyx")):
        rel = pyx.relative_to(ext).with_suffix("")
        # C headers beside a .pyx (its cdef extern code) are dependencies of its compile
        yield ".".join(rel.parts), pyx, [str(h.relative_to(HERE)) for h in sorted(pyx.parent.glob("*.h"))]
    for pxd in sorted(ext.rglob("_*_c.pxd")):
        if pxd.with_suffix(".pyx").exists():
            continue  # the declarations of a .pyx kernel
        rel = pxd.relative_to(ext).with_suffix("")
        twin = HERE / "src" / rel.parent / (rel.name[: -len("_c")] + "_py.py")
        if not twin.exists():
            raise SystemExit(f"setup.py: {pxd.relative_to(HERE)} has neither a .pyx beside it "
                             f"nor the pure-Python source {twin.relative_to(HERE)}")
        # Cython does not see the .pxd as the .py's dependency (another name, another
        # directory), nor the .pxd files that .pxd cimports: a generated .c older than
        # any of them is removed so that cythonize writes it again (a cimported cdef
        # class that gained a field changes its size), and the .pxd is named as a
        # dependency of the C compile.
        generated = twin.with_suffix(".c")
        if generated.exists() and generated.stat().st_mtime < max(
                p.stat().st_mtime for p in _pxd_closure(ext, pxd)):
            generated.unlink()
        yield ".".join(rel.parts), twin, [str(pxd.relative_to(HERE))]


def kernel_extensions():
    """Return one Extension per kernel under ext/ (.pyx, or a pure-mode .pxd)."""
    from Cython.Build import cythonize

    debug = os.environ.get("FASTPOST_DEBUG") == "1"
    exts = []
    for name, source, depends in kernel_sources():
        exts.append(
            Extension(
                name,
                [str(source.relative_to(HERE))],
                depends=depends,
                extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
                define_macros=[("CYTHON_TRACE", "1")] if debug else [],
                libraries=LIBRARIES.get(name, []),
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


setup(ext_modules=[] if os.environ.get("FASTPOST_NO_EXT") == "1" else kernel_extensions(),
      package_dir={"": "src"})

"""Build fastpost-sendmail, the compiled front end for plain local submission.

Postfix counterpart: none (Postfix's sendmail is C throughout). Why and what it
measured: docs/submission.md, "sendmail speed".

    python -m fastpost.cli.frontend TARGET        (./dev build: .venv/bin/fastpost-sendmail)

``build_frontend(target)`` compiles ``csrc/sendmail.c`` with a generated
``frontend_conf.h``: the interpreter (this Python) and the boot program the front end
falls back to for every case it does not handle itself:

    PYTHON -I -S -B -c BOOT ARGS...   (BOOT puts fastpost's import directories first on
                                       sys.path and runs fastpost.cli.sendmail.main)

-S skips site.py (no .pth files to read): the import directories are fixed at build
time, as for the set-gid helpers (fastpost.cli.setgid._import_roots). Rebuild after
moving the installation or the virtualenv.

Diagnostics: FrontendError naming the compiler's complaint or a missing compiler;
``main`` prints it and exits 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "sendmail.c")
NAME = "fastpost-sendmail"


class FrontendError(Exception):
    """The front end cannot be built (the text says why)."""


def boot_program(roots: list[str]) -> str:
    """The Python program the front end runs for everything it does not handle."""
    return (f"import sys; sys.path[:0] = {roots!r}; "
            "from fastpost.cli.sendmail import main; sys.exit(main(sys.argv[1:]))")


def build_frontend(target: str, *, cc: str = "cc", python: str | None = None) -> str:
    """Compile the front end into ``target`` (atomically replaced); return its path."""
    from fastpost.cli.setgid import _c_string, _import_roots, copy_sources

    compiler = shutil.which(cc)
    if compiler is None:
        raise FrontendError(f"{cc}: no C compiler found (install gcc)")
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="fastpost-frontend-") as work:
        copy_sources(SOURCE, work)
        with open(os.path.join(work, "frontend_conf.h"), "w") as fh:
            fh.write(f"#define FP_PYTHON {_c_string(python)}\n")
            fh.write(f"#define FP_BOOT {_c_string(boot_program(_import_roots()))}\n")
        binary = os.path.join(work, NAME)
        proc = subprocess.run([compiler, "-O2", "-Wall", "-o", binary,
                               os.path.join(work, "sendmail.c")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise FrontendError(f"{SOURCE}: the compiler failed: {proc.stderr.strip()}")
        tmp = f"{target}.new"
        shutil.copyfile(binary, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m fastpost.cli.frontend TARGET (e.g. .venv/bin/{NAME})",
              file=sys.stderr)
        return 64
    try:
        build_frontend(argv[0])
    except (FrontendError, OSError) as exc:
        print(f"frontend: fatal: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["NAME", "FrontendError", "boot_program", "build_frontend"]

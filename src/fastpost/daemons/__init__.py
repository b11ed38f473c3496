"""fastpost's daemons, one package per program, named as in master.cf's command column.

Each exposes ``main(argv)``, which hands itself to a skeleton in fastpost.server. The
master imports them by name (``trivial-rewrite`` -> ``fastpost.daemons.trivial_rewrite``);
see docs/master.md.
"""

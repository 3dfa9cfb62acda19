"""`rdet` run inside the test process (no interpreter and torch start-up per call), for the many short CLI checks;
the headline flows still run the installed console script in a subprocess (tiny_zoo.run_rdet)."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def rdet_here(capsys, monkeypatch, *args, env: dict | None = None) -> Result:
    """Run `rdet ARGS` through cli.main.main with only `env`'s RDET_* variables set; capture its output."""
    from cli.main import main

    for key in [k for k in os.environ if k.startswith("RDET_")]:
        monkeypatch.delenv(key)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)

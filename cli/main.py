"""The `rdet` command: wires the subcommands together and turns every known error into one line."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from retinanet.errors import exhausted_memory
from retinanet.version import package_version

from . import commands
from .common import Fail, err
from .help_format import hide_flag_types
from .signals import Stopped, exit_code, said, stopping_like_ctrl_c
from .text import shown

hide_flag_types()

app = typer.Typer(
    name="rdet",
    help="A model zoo for MMDetection v2.0's RetinaNet detectors: browse, download, predict, evaluate, train, bench.",
    no_args_is_help=True,
    add_completion=True,  # rdet --install-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"rdet {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Show the version and exit."),
):
    """rdet: RetinaNet model zoo.

    Examples:

      rdet list

      rdet predict photo.jpg --out results/

      rdet eval x101_32x4d_fpn_2x --data-root /data/coco
    """


commands.register(app)


def _known_errors():
    from retinanet.errors import RetinaNetError
    from zoo.errors import ZooError

    return (ZooError, RetinaNetError)


def refuse_empty(args: list[str]) -> None:
    """Fail on an empty argument, which no rdet option or argument means: click would read `--out ''` as the
    current directory and `--device ''` as the default, and `predict ''` as a file named ''. It is most often a
    shell variable that was never set."""
    for i, token in enumerate(args):
        if token.startswith("--") and token.endswith("=") and len(token) > 3:
            where = token[:-1]
        elif token == "":
            before = args[i - 1] if i else ""
            where = before if before.startswith("-") and "=" not in before and before != "--" else "an argument"
        else:
            continue
        raise Fail(f"{where}: empty value (an unset shell variable?); give a value or leave it out")


def main(argv=None) -> None:
    """Entry point of the console script."""
    try:
        refuse_empty(list(sys.argv[1:] if argv is None else argv))
        with stopping_like_ctrl_c():
            rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except Fail as e:
        err.print(f"[red]error:[/red] {shown(e)}", highlight=False)
        sys.exit(e.code)
    except _known_errors() as e:
        err.print(f"[red]error:[/red] {shown(e)}", highlight=False)
        sys.exit(getattr(e, "exit_code", 2))
    except (KeyboardInterrupt, Stopped) as e:  # Ctrl-C, SIGTERM, SIGHUP
        err.print(said(e))
        sys.exit(exit_code(e))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except _usage_errors() as e:  # unknown options, bad values: click's own message and exit code 2
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:  # a failure no check foresaw: still one line; the traceback when asked for
        memory = exhausted_memory(e)
        if memory:
            err.print(f"[red]error:[/red] out of {memory} memory (fewer images at a time, or a smaller --batch-size?)")
            sys.exit(OUT_OF_MEMORY_EXIT)
        if os.environ.get("RDET_TRACEBACK", "").strip() not in ("", "0"):
            raise
        err.print(f"[red]error:[/red] {shown(unexpected(e))}", highlight=False)
        sys.exit(UNEXPECTED_EXIT)


UNEXPECTED_EXIT = 70  # sysexits' EX_SOFTWARE: rdet itself failed, not the input or the network
OUT_OF_MEMORY_EXIT = 71  # sysexits' EX_OSERR: the machine ran out of a resource; not a bug in rdet


def unexpected(error: BaseException) -> str:
    """One line for an exception no check foresaw, saying it is a bug and how to see where it happened."""
    text = " ".join(str(error).split())[:300] or "(no message)"
    return (f"unexpected {error.__class__.__name__}: {text} (a bug in rdet; RDET_TRACEBACK=1 shows the "
            f"traceback, which a bug report should include)")


def _usage_errors():
    # Typer >= 0.26 vendors click (typer._click) and bases its exceptions on TyperException;
    # older Typer raises click's own.
    kinds = [getattr(typer, "TyperException", None)]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(k for k in kinds if k is not None)


if __name__ == "__main__":
    main()

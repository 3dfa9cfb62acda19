"""How `--help` looks: flags show no `<bool>` type (a flag takes no value, so the type only misleads)."""
from __future__ import annotations


def hide_flag_types() -> None:
    """Typer >= 0.26 prints a type column for every option, `<bool>` for flags; blank it for flags only. Older
    Typer has no such column, and then there is nothing to do."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_rdet_flags_hidden", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._rdet_flags_hidden = True
    TyperOption.display_type_rich = display_type_rich

"""--precision in every command that runs a model, with --amp kept as the older spelling of "the device's reduced
precision" (fp16 on CUDA, bf16 on the CPU)."""
from __future__ import annotations

from typing import Optional

import typer

from .common import Fail

PRECISIONS = ("fp32", "bf16", "fp16")
PrecisionChoiceOption = typer.Option(None, "--precision", help="fp32 (the default, as the published figures), "
                                     "bf16, or fp16 (CUDA only).", show_default=False)
AmpOption = typer.Option(False, "--amp", help="Older spelling: the device's reduced precision (fp16 on CUDA, "
                         "bf16 on the CPU).")


def chosen_precision(precision: Optional[str], amp: bool, device_type: str) -> str:
    """--precision as given, else what --amp means on this device, else fp32."""
    if precision is not None and precision not in PRECISIONS:
        raise Fail(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    reduced = "fp16" if device_type == "cuda" else "bf16"
    if amp and precision is not None and precision != reduced:
        raise Fail(f"--amp means --precision {reduced} here; give one of them")
    return precision or (reduced if amp else "fp32")

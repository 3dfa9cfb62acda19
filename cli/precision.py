"""--precision in every command that runs a model, with --amp kept as the older spelling of "the device's reduced
precision" (fp16 on CUDA, bf16 on the CPU)."""
from __future__ import annotations

from typing import Optional

import typer

from retinanet.config import PRECISION_NAMES, reduced_precision

from .common import Fail


def check_precision_name(precision: Optional[str]) -> Optional[str]:
    """The --precision option's check, as it is parsed (before any download or model load)."""
    if precision is not None and precision not in PRECISION_NAMES:
        raise Fail(f"--precision must be one of {', '.join(PRECISION_NAMES)}, not '{precision}'")
    return precision


PrecisionChoiceOption = typer.Option(None, "--precision", help="fp32 (the default, as the published figures), "
                                     "tf32 (Ampere or later), bf16, or fp16 (CUDA only).", show_default=False,
                                     callback=check_precision_name)
AmpOption = typer.Option(False, "--amp", help="Older spelling: the device's reduced precision (fp16 on CUDA, "
                         "bf16 on the CPU).")


def chosen_precision(precision: Optional[str], amp: bool, device_type: str) -> str:
    """--precision as given, else what --amp means on this device (the engine's rule), else fp32."""
    check_precision_name(precision)
    reduced = reduced_precision(device_type)
    if amp and precision is not None and precision != reduced:
        raise Fail(f"--amp means --precision {reduced} here; give one of them")
    return precision or (reduced if amp else "fp32")

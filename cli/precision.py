"""--precision in every command that runs a model, with --amp kept as the older spelling of "the device's reduced
precision" (fp16 on CUDA, bf16 on the CPU)."""
from __future__ import annotations

from typing import Optional

import typer

from .common import Fail

PrecisionChoiceOption = typer.Option(None, "--precision", help="fp32 (the default, as the published figures), "
                                     "tf32 (Ampere or later), bf16, or fp16 (CUDA only).", show_default=False)
AmpOption = typer.Option(False, "--amp", help="Older spelling: the device's reduced precision (fp16 on CUDA, "
                         "bf16 on the CPU).")


def chosen_precision(precision: Optional[str], amp: bool, device_type: str) -> str:
    """--precision as given, else what --amp means on this device (the engine's rule), else fp32."""
    import torch

    from retinanet.inference.fast import PRECISIONS, amp_precision

    if precision is not None and precision not in PRECISIONS:
        raise Fail(f"--precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    reduced = amp_precision(torch.device(device_type), True)
    if amp and precision is not None and precision != reduced:
        raise Fail(f"--amp means --precision {reduced} here; give one of them")
    return precision or (reduced if amp else "fp32")

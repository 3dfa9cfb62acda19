"""`rdet demo`: the first run. The published r50_fpn_1x on the bundled photo, downloaded once and verified; where
the weights cannot be had (no network, offline mode, a failed download) it still runs, on seeded random weights,
and says so in one prominent line with the ways to get the real ones. It never falls back silently."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import err, out, print_json
from .options import shared_options
from .text import shown

DEMO_MODEL = "r50_fpn_1x"
DEMO_SCORE_THR = 0.3


def _weights_or_reason(entry, cache_dir, offline: bool, quiet: bool) -> tuple[Optional[Path], str]:
    """(the verified checkpoint, "") or (None, why it cannot be had now), waiting seconds at most when the
    network is down: a short probe of the host comes before any download."""
    from zoo.cache import Cache
    from zoo.errors import DownloadError
    from zoo.settings import is_offline
    from zoo.remote import probe
    from zoo.weights import checkpoint_file, ensure_weights, is_cached

    cache = Cache(cache_dir)
    if is_cached(checkpoint_file(entry), cache):  # this entry's own verified file: checked again, no network
        return ensure_weights(entry, cache, offline=True, quiet=True), ""
    if is_offline(offline or None):
        return None, "offline mode (--offline or RDET_OFFLINE)"
    reached = probe(entry.url)
    if not reached.ok:
        return None, f"the weights host cannot be reached ({reached.detail})"
    try:
        return ensure_weights(entry, cache, quiet=quiet), ""
    except DownloadError as e:
        return None, f"the download failed ({e})"


def _fallback_notice(reason: str) -> None:
    err.print(f"[bold yellow]NO REAL WEIGHTS: {reason}; this demo runs seeded RANDOM weights and its boxes "
              f"mean nothing. Get the real ones with `rdet download {DEMO_MODEL}` once the network is up, "
              f"`rdet import {DEMO_MODEL} FILE`, or RDET_MIRROR=URL.[/]", highlight=False)


@shared_options
def demo(
    out_dir: Path = typer.Option(Path("rdet-demo"), "--out", help="Where the annotated photo and "
                                 "predictions.json go."),
    *, device, as_json, zoo_file, cache_dir, offline, quiet,
):
    """Show what rdet does: r50_fpn_1x on the bundled photo, annotated image and summary in rdet-demo/.

    The published weights (146 MB) are downloaded once and verified. Without a network it still completes, on
    seeded random weights, and says so.

    Examples:

      rdet demo

      rdet demo --out /tmp/demo --device cpu

      rdet demo --json      # predict's JSON on stdout
    """
    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.data.sources import Input, frames
    from zoo import get as zoo_entry

    from .predict_outputs import Outputs, check_out_dir
    from .predict_run import detect_frames, print_summary
    from .provenance import provenance

    check_out_dir(out_dir)
    entry = zoo_entry(DEMO_MODEL, zoo_file)
    weights, reason = _weights_or_reason(entry, cache_dir, offline, quiet or as_json)
    random_weights = weights is None
    if random_weights:
        _fallback_notice(reason)
    import zoo

    det = zoo.load(DEMO_MODEL, weights=weights, device=device, zoo_file=zoo_file, random_weights=random_weights)
    doc = {"schema": "rdet-predict/1", "model": entry.name, "score_thr": DEMO_SCORE_THR, "classes": None,
           "provenance": provenance(entry, det.device, "fp32", det.cfg.scale, None, random_weights)}
    with Outputs(out_dir, doc) as outputs:
        run = detect_frames(det, frames([Input("image", str(SAMPLE_IMAGE))]), outputs, DEMO_SCORE_THR,
                            show=not (quiet or as_json))
    if as_json:
        print_json({**doc, "images": run.records})
    elif not quiet:
        print_summary(entry.name, run, DEMO_SCORE_THR, out_dir, 0.0)
        out.print(f"annotated photo: {shown(out_dir / SAMPLE_IMAGE.name)}", highlight=False)
    if random_weights and not as_json:  # said again last, where a person reads; once is enough for a script
        _fallback_notice(reason)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

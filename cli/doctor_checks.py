"""The checks behind `rdet doctor`: each returns Check rows (what, status, one line of detail) and never raises,
so that one broken part of an installation does not hide what is wrong with the others."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
MIN_FREE_BYTES = 2 * 1000 ** 3  # the ten checkpoints and the backbones take about 1.7 GB
CPU_WHEELS = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
              "no_proxy")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, INFO, WARN or FAIL
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def torch_checks() -> list[Check]:
    try:
        import torch
    except Exception as e:  # a broken torch install is exactly what doctor is for
        return [Check("torch", FAIL, f"cannot import torch ({e.__class__.__name__}: {e})")]
    rows = [Check("torch", OK, f"{torch.__version__} (CUDA build {torch.version.cuda or 'none, CPU only'})")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(Check("CUDA", OK, f"{torch.cuda.device_count()} device(s): {names}"))
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        rows.append(Check("cuDNN", OK if cudnn else WARN, str(cudnn) if cudnn else "not available"))
        bf16 = torch.cuda.is_bf16_supported()
        rows.append(Check("bf16", OK if bf16 else INFO, "supported on the GPU" if bf16 else
                          "not supported on this GPU (use --precision fp16)"))
    else:
        if torch.version.cuda:
            rows.append(Check("CUDA", INFO, "no CUDA device: runs on the CPU; this torch carries unused CUDA "
                              f"libraries (several GB), the CPU wheels are smaller: {CPU_WHEELS}"))
        else:
            rows.append(Check("CUDA", INFO, "no CUDA device: runs on the CPU"))
        from retinanet.inference.fast import cpu_has_bf16

        cap = torch.backends.cpu.get_cpu_capability()
        rows.append(Check("bf16", OK if cpu_has_bf16() else INFO, f"native on this CPU ({cap})" if cpu_has_bf16()
                          else f"not native on this CPU ({cap}): --precision bf16 is refused, fp32 is used"))
    return rows


def image_library_checks() -> list[Check]:
    rows = []
    try:
        import cv2

        registry = cv2.videoio_registry
        backends = list(dict.fromkeys(registry.getBackendName(b) for b in registry.getStreamBackends()
                                      if registry.hasBackend(b)))  # the registry also lists ones not built in
        video = "FFMPEG" in backends
        rows.append(Check("OpenCV", OK if video else WARN, f"{cv2.__version__}; video I/O: "
                          f"{', '.join(backends) or 'none'}" + ("" if video else " (no FFMPEG: few video formats)")))
    except Exception as e:
        rows.append(Check("OpenCV", FAIL, f"cannot import cv2 ({e.__class__.__name__}: {e})"))
    try:
        import PIL

        rows.append(Check("Pillow", OK, PIL.__version__))
    except Exception as e:
        rows.append(Check("Pillow", FAIL, f"cannot import PIL ({e.__class__.__name__}: {e})"))
    return rows


def scorer_checks() -> list[Check]:
    """pycocotools, which rdet eval and train's evaluation score with (faster-coco-eval instead where installed)."""
    from retinanet.coco_api import pycocotools_classes
    from retinanet.errors import RetinaNetError
    from retinanet.evaluation.scorer import FASTER, available_backends
    from retinanet.version import installed_version

    def installed(name: str) -> str:
        return installed_version(name) or "(version unknown)"

    try:
        pycocotools_classes()
        rows = [Check("pycocotools", OK, installed("pycocotools"))]
    except RetinaNetError as e:
        rows = [Check("pycocotools", FAIL, str(e))]
    if FASTER in available_backends():  # the scorer's own rule for using it
        rows.append(Check("faster-coco-eval", OK, f"{installed('faster-coco-eval')}: rdet eval scores with it"))
    else:
        rows.append(Check("faster-coco-eval", INFO, "not installed (optional, 10-16x faster scoring: "
                                                    "pip install 'rdet[fast-eval]')"))
    return rows


def _stale_locks(root: Path) -> list[Path]:
    """Lock files that no process holds now."""
    from filelock import FileLock, Timeout

    from zoo.cache import LOCK_SUFFIX

    stale = []
    for path in sorted(p for p in root.glob("*" + LOCK_SUFFIX) if p.is_file()):  # a directory is no lock
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # someone is downloading right now
        lock.release()
        stale.append(path)
    return stale


def cache_checks(cache_dir: Optional[Path], zoo_file: Optional[Path], verify: bool) -> list[Check]:
    from zoo.cache import Cache
    from zoo.errors import CacheError
    from zoo.manifest import Zoo
    from zoo.weights import COMPLETE, PARTIAL, cache_contents, verify_file

    try:
        cache = Cache(cache_dir)
    except CacheError as e:  # a relative RDET_CACHE, a name too long: a failed check, the others go on
        return [Check("cache", FAIL, str(e))]
    root = cache.root
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".doctor-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return [Check("cache", FAIL, f"{root} is not writable ({e.strerror or e}); set RDET_CACHE or --cache-dir")]
    rows = [Check("cache", OK, f"{root} (writable)")]
    free = shutil.disk_usage(root).free
    rows.append(Check("free space", OK if free >= MIN_FREE_BYTES else WARN, f"{free / 1000 ** 3:.1f} GB free"
                      + ("" if free >= MIN_FREE_BYTES else " (the whole zoo needs about 2 GB)")))
    stale = _stale_locks(root)
    rows.append(Check("lock files", OK if not stale else WARN, "none left over" if not stale else
                      f"{len(stale)} left over by ended processes (harmless; safe to delete)"))
    try:
        items = cache_contents(Zoo.load(zoo_file), cache)
    except Exception as e:  # a bad user manifest is reported, the other checks go on
        return rows + [Check("weights", FAIL, str(e))]
    complete = [i for i in items if i.state == COMPLETE]
    partial = [i for i in items if i.state == PARTIAL]
    detail = f"{len(complete)} complete, {len(partial)} partial"
    if not verify:
        rows.append(Check("weights", OK, detail + " (--verify re-hashes them)"))
        return rows
    bad = [v for v in (verify_file(i) for i in complete) if v.ok is False]
    rows.append(Check("weights", FAIL if bad else OK, detail + (f"; {len(bad)} fail verification: "
                      + ", ".join(v.file.path.name for v in bad) + " (rdet cache rm NAME)" if bad else
                      "; all verified")))
    return rows


def network_checks(zoo_file: Optional[Path], offline: bool) -> list[Check]:
    from zoo.errors import DownloadError
    from zoo.settings import is_offline, mirror_base, mirrored, redacted
    from zoo.manifest import Zoo
    from zoo.remote import probe

    rows = []
    proxies = [f"{v}={redacted(os.environ[v])}" for v in PROXY_VARS if os.environ.get(v)]  # no credentials shown
    rows.append(Check("proxies", INFO, ", ".join(proxies) if proxies else "none set"))
    try:
        mirror = mirror_base()
    except DownloadError as e:
        return rows + [Check("mirror", FAIL, str(e))]
    rows.append(Check("mirror", INFO, f"RDET_MIRROR={redacted(mirror)}" if mirror else "none (RDET_MIRROR unset)"))
    if is_offline(offline or None):
        rows.append(Check("offline", INFO, "on (--offline or RDET_OFFLINE): the network is never used"))
        return rows
    try:
        url = Zoo.load(zoo_file).get("r50_fpn_1x").url
    except Exception:
        url = next(iter(Zoo.load(None))).url
    result = probe(url)
    host = urlparse(redacted(mirrored(url))).netloc or redacted(mirrored(url))
    rows.append(Check("weights host", OK if result.ok else FAIL, f"{host}: {result.detail}" + (
        "" if result.ok else "; use RDET_MIRROR, a proxy, or `rdet import NAME FILE`")))
    return rows


def dataset_checks(data_root: Path) -> list[Check]:
    """Each COCO split under a --data-root: annotations readable and valid, every listed image present."""
    from retinanet.errors import DatasetError
    from retinanet.data.coco import CocoSet

    from .common import coco_split

    if not data_root.is_dir():
        return [Check("dataset", FAIL, f"{data_root}: no such directory")]
    rows = []
    for split in ("val", "train"):
        ann, images = coco_split(data_root, split)
        if not ann.exists():
            status = FAIL if split == "val" else INFO
            rows.append(Check(f"COCO {split}", status, f"{ann} not found" + ("" if split == "val" else
                                                                             " (needed only to train)")))
            continue
        try:
            found = CocoSet.load(ann, images)
        except DatasetError as e:
            rows.append(Check(f"COCO {split}", FAIL, str(e)))
            continue
        rows.append(Check(f"COCO {split}", OK, f"{len(found)} images, {len(found.class_names)} classes, all present"))
    return rows

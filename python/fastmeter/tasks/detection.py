"""object-detection: a torchvision detection model over the images of a COCO annotation file, scored with COCO
mAP by pycocotools. Images are read and decoded outside each batch's window; the window holds the copy to the
device and the forward pass (with the model's own pre- and post-processing)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.tasks.base import BatchResult, Prepared, Task, TaskScore, need_extra
from fastmeter.tasks.config import TaskConfig
from fastmeter.tasks.torch_env import TorchEnv


def _quiet(f: Any, *args: Any) -> Any:
    """pycocotools prints progress to stdout; a library must not."""
    with contextlib.redirect_stdout(io.StringIO()):
        return f(*args)


class ObjectDetection(Task):
    def __init__(self, cfg: TaskConfig) -> None:
        t = cfg.task
        self.env = TorchEnv(t)
        what = 'kind = "object-detection"'
        models = need_extra("torchvision.models.detection", what)
        self.to_tensor = need_extra("torchvision.transforms.functional", what).pil_to_tensor
        self.pil = need_extra("PIL.Image", what)
        coco_mod = need_extra("pycocotools.coco", what)
        self.cocoeval = need_extra("pycocotools.cocoeval", what)
        ann = Path(t.annotations or "")
        try:
            json.loads(ann.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"[task].annotations: cannot read {ann} as COCO JSON: {exc}") from None
        try:
            self.coco = _quiet(coco_mod.COCO, str(ann))
        except Exception as exc:  # pycocotools asserts on a malformed file
            raise ConfigError(
                f"[task].annotations: {ann} is not a COCO annotation file: {type(exc).__name__}: {exc}"
            ) from None
        self.images_dir = Path(t.data or "")
        self.image_ids = sorted(self.coco.getImgIds())
        if not self.image_ids:
            raise ConfigError(f"[task].annotations: {ann} lists no images")
        missing = [
            self.coco.imgs[i]["file_name"]
            for i in self.image_ids
            if not (self.images_dir / self.coco.imgs[i]["file_name"]).is_file()
        ]
        if missing:
            raise ConfigError(
                f"[task].data: {len(missing)} images of the annotation file are not in "
                f"{self.images_dir}, e.g. {missing[0]}"
            )
        # torchvision detectors number classes with 0 as background: COCO category ids are used as labels.
        self.num_classes = t.num_classes or max(self.coco.getCatIds(), default=0) + 1
        name = t.model or ""
        if name not in need_extra("torchvision.models", what).list_models(module=models):
            raise ConfigError(
                f'[task].model = "{name}" is not a torchvision detection model; e.g. '
                "fasterrcnn_mobilenet_v3_large_320_fpn, retinanet_resnet50_fpn"
            )
        model = need_extra("torchvision.models", what).get_model(
            name, weights=None, weights_backbone=None, num_classes=self.num_classes
        )
        self.model = self.env.load_weights(model, t.weights or "")
        self.batch_size = t.batch_size
        self.model_name = name

    def batches(self) -> Iterator[Prepared]:
        for i in range(0, len(self.image_ids), self.batch_size):
            ids = self.image_ids[i : i + self.batch_size]
            images = []
            for image_id in ids:
                path = self.images_dir / self.coco.imgs[image_id]["file_name"]
                with self.pil.open(path) as im:
                    images.append(self.to_tensor(im.convert("RGB")).float() / 255.0)
            yield Prepared(len(ids), (ids, images))

    def run(self, payload: Any) -> Any:
        ids, images = payload
        with self.env.torch.inference_mode(), self.env.autocast():
            out = self.model([im.to(self.env.device, non_blocking=True) for im in images])
        self.env.sync()
        return ids, [{k: v.float().cpu() for k, v in o.items()} for o in out]

    def score(self, results: Sequence[BatchResult]) -> TaskScore:
        ids = [i for r in results for i in r.output[0]]
        outputs = [o for r in results for o in r.output[1]]
        dets = []
        for image_id, o in zip(ids, outputs):
            for (x0, y0, x1, y1), s, c in zip(o["boxes"].tolist(), o["scores"].tolist(), o["labels"].tolist()):
                dets.append(
                    {"image_id": image_id, "category_id": int(c), "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
                )
        figures: dict[str, Any] = {"detections": len(dets)}
        if dets:
            ev = self.cocoeval.COCOeval(self.coco, _quiet(self.coco.loadRes, dets), "bbox")
            ev.params.imgIds = ids
            for step in (ev.evaluate, ev.accumulate, ev.summarize):
                _quiet(step)
            # stats[0]: AP at IoU .50:.95, stats[1]: at .50; -1 where there is no ground truth to score against.
            ap, ap50 = (float(v) if v >= 0 else None for v in ev.stats[:2])
        else:  # no detection at all: precision is 0 at every recall, a measured result (not unknown)
            ap = ap50 = 0.0 if self.coco.getAnnIds(imgIds=ids) else None
        figures.update(accuracy=ap, map=ap, map_50=ap50)
        return TaskScore(figures, {"image_id": ids, "detections": [len(o["scores"]) for o in outputs]})

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "num_classes": self.num_classes,
            "images": len(self.image_ids),
            "torch": self.env.torch.__version__,
        }

"""image-classification: a torchvision (or timm) classifier over an ImageFolder / ImageNet-layout directory, with
top-1 and top-5 accuracy. Images are read, decoded, resized, centre-cropped and normalised outside each batch's
window; the window holds the copy to the device and the forward pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.tasks.base import BatchResult, Prepared, Task, TaskScore, need_extra
from fastmeter.tasks.config import TaskConfig
from fastmeter.tasks.torch_env import TorchEnv

# ImageNet's per-channel mean and standard deviation: what torchvision's and timm's classifiers are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOP_K = 5


def build_classifier(name: str, num_classes: int) -> Any:
    """torchvision's model `name`, or timm's for "timm:NAME", randomly initialised (weights are loaded after)."""
    what = f'[task].model = "{name}"'
    if name.startswith("timm:"):
        timm = need_extra("timm", what)
        try:
            return timm.create_model(name[5:], pretrained=False, num_classes=num_classes)
        except RuntimeError as exc:  # timm: "Unknown model"
            raise ConfigError(f"{what}: {exc}") from None
    models = need_extra("torchvision.models", what)
    if name not in models.list_models():
        raise ConfigError(f"{what} is not a torchvision model; e.g. resnet18, resnet50, vit_b_16 (or timm:NAME)")
    return models.get_model(name, weights=None, num_classes=num_classes)


class ImageClassification(Task):
    def __init__(self, cfg: TaskConfig) -> None:
        t = cfg.task
        self.env = TorchEnv(t)
        tv = need_extra("torchvision", 'kind = "image-classification"')
        root = Path(t.data or "")
        if not root.is_dir():
            raise ConfigError(
                f"[task].data: {t.data} is not a directory (an ImageFolder: one sub-directory of images per class)"
            )
        tf = tv.transforms
        transform = tf.Compose(
            [
                tf.Resize(t.image_size),
                tf.CenterCrop(t.image_size),
                tf.ToTensor(),
                tf.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        try:
            self.dataset = tv.datasets.ImageFolder(str(root), transform=transform)
        except (FileNotFoundError, OSError) as exc:
            raise ConfigError(f"[task].data: {exc}") from None
        self.num_classes = t.num_classes or len(self.dataset.classes)
        if len(self.dataset.classes) > self.num_classes:
            raise ConfigError(
                f"[task].data has {len(self.dataset.classes)} classes but the model has "
                f"{self.num_classes} ([task].num_classes)"
            )
        self.model = self.env.load_weights(build_classifier(t.model or "", self.num_classes), t.weights or "")
        self.batch_size = t.batch_size
        self.workers = t.data_workers
        self.model_name = t.model

    def batches(self) -> Iterator[Prepared]:
        torch = self.env.torch
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.workers
        )
        for images, labels in loader:
            yield Prepared(len(labels), (images, labels))

    def run(self, payload: Any) -> Any:
        images, labels = payload
        torch = self.env.torch
        with torch.inference_mode(), self.env.autocast():
            logits = self.model(images.to(self.env.device, non_blocking=True))
            top = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices
        self.env.sync()
        return labels, top.cpu()

    def score(self, results: Sequence[BatchResult]) -> TaskScore:
        labels = [int(v) for r in results for v in r.output[0]]
        tops = [[int(v) for v in row] for r in results for row in r.output[1]]
        top1 = [top[0] == y for top, y in zip(tops, labels)]
        top5 = [y in top for top, y in zip(tops, labels)]
        n = len(labels)
        return TaskScore(
            {
                "accuracy": sum(top1) / n if n else None,
                "top1_accuracy": sum(top1) / n if n else None,
                "top5_accuracy": sum(top5) / n if n else None,
            },
            {"label": labels, "prediction": [t[0] for t in tops], "correct_top1": top1, "correct_top5": top5},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "num_classes": self.num_classes,
            "images": len(self.dataset),
            "classes": len(self.dataset.classes),
            "torch": self.env.torch.__version__,
        }

"""scikit-learn's digits (1797 labelled 8x8 images, shipped inside the package: nothing is downloaded) as a real
ImageFolder, and a small CNN that reaches 90% validation accuracy on CPU within a few epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.extras import need

TRAIN_SHARE = 0.75


def write_image_folder(root: Path) -> tuple[Path, Path]:
    """train/ and val/ ImageFolders (one directory per class, 8-bit grayscale PNGs); a fixed split."""
    datasets = need("sklearn.datasets", "lightning")  # scikit-learn comes with the test extras
    image = need("PIL.Image", "vision")
    digits = datasets.load_digits()
    n_train = int(len(digits.images) * TRAIN_SHARE)
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        split = "train" if i < n_train else "val"
        d = root / split / str(label)
        d.mkdir(parents=True, exist_ok=True)
        image.fromarray((pixels * (255 / 16)).astype("uint8"), mode="L").save(d / f"{i:04d}.png")
    return root / "train", root / "val"


def load_image_folder(path: Path) -> Any:
    """The ImageFolder read once through torchvision into a TensorDataset (epochs then cost no PNG decoding)."""
    torch = need("torch", "lightning")
    tv = need("torchvision", "vision")
    folder = tv.datasets.ImageFolder(str(path), transform=tv.transforms.ToTensor(), loader=_gray)
    xs, ys = zip(*(folder[i] for i in range(len(folder))))
    return torch.utils.data.TensorDataset(torch.stack(xs), torch.tensor(ys))


def _gray(path: str) -> Any:
    image = need("PIL.Image", "vision")
    with image.open(path) as im:
        return im.convert("L")


def small_cnn() -> Any:
    nn = need("torch.nn", "lightning")
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10)
    )

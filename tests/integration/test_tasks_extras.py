"""The task runner with real libraries (torch, torchvision, pycocotools, transformers), random weights and generated
data, nothing downloaded: ResNet-18 classification, a Faster R-CNN detector with a generated COCO file, and a tiny
Llama generating from a JSONL, each through `fastmeter bench task.toml` on the NVML emulator, with every batch's
energy checked against the emulator's analytic truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.extras import need

pytestmark = pytest.mark.extras


def _bench(tmp_path: Path, task: dict[str, object]) -> tuple[dict, list[dict], list[dict]]:
    cfg = tmp_path / "task.toml"
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in task.items())
    cfg.write_text(f'[task]\n{body}\n\n[bench]\nsources = ["nvml"]\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(out), "--allow-degraded"])
    assert result.exit_code == 0, result.output
    tables = []
    for name in ("batches.arrow", "items.arrow"):
        with pa.OSFile(str(out / name)) as f:
            tables.append(pa.ipc.open_file(f).read_all().to_pylist())
    return json.loads((out / "run.json").read_text()), tables[0], tables[1]


def _check_energy(spec: GpuSpec, run: dict, batches: list[dict]) -> None:
    s = run["summary"]
    t0, t1 = run["span_ns"]
    assert abs(s["energy_j"] - spec.energy_j(t0, t1)) <= s["energy_bound_j"]
    for b in batches:
        assert abs(b["energy_j"] - spec.energy_j(b["t0_ns"], b["t1_ns"])) <= b["energy_bound_j"], b
    measured = [b for b in batches if not b["warmup"]]
    assert (measured[0]["t0_ns"], measured[-1]["t1_ns"]) == (t0, t1)
    assert s["items"] == sum(b["items"] for b in measured)


@pytest.fixture
def gpu(fake_nvml: FakeNvml) -> GpuSpec:
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(70.0, 260.0, 0.04, 0.5))])
    return spec


def test_resnet18_classification_from_a_weights_file(gpu: GpuSpec, tmp_path: Path) -> None:
    torch = need("torch", "vision")
    tv = need("torchvision", "vision")
    image = need("PIL.Image", "vision")
    g = torch.Generator().manual_seed(0)
    for c in range(3):
        (tmp_path / "data" / f"class{c}").mkdir(parents=True)
        for i in range(8):
            pixels = (torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()
            image.fromarray(pixels).save(tmp_path / "data" / f"class{c}" / f"{i}.png")
    torch.manual_seed(1)
    model = tv.models.resnet18(num_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "resnet18.pt")
    run, batches, items = _bench(
        tmp_path,
        {
            "kind": "image-classification",
            "model": "resnet18",
            "weights": str(tmp_path / "resnet18.pt"),
            "data": str(tmp_path / "data"),
            "image_size": 32,
            "batch_size": 8,
            "warmup_batches": 1,
        },
    )
    _check_energy(gpu, run, batches)
    assert [b["warmup"] for b in batches] == [True, False, False]
    # The predictions are the weights file's: recompute them with the same model and preprocessing.
    ds = tv.datasets.ImageFolder(
        str(tmp_path / "data"),
        transform=tv.transforms.Compose(
            [
                tv.transforms.Resize(32),
                tv.transforms.CenterCrop(32),
                tv.transforms.ToTensor(),
                tv.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        ),
    )
    x = torch.stack([ds[i][0] for i in range(8, 24)])
    with torch.inference_mode():
        expected = model(x).argmax(1).tolist()
    assert [i["prediction"] for i in items] == expected
    assert [i["label"] for i in items] == [ds[i][1] for i in range(8, 24)]
    s = run["summary"]
    assert s["top1_accuracy"] == pytest.approx(sum(p == y for p, y in zip(expected, [i["label"] for i in items])) / 16)
    assert s["top5_accuracy"] == 1.0  # 3 classes: the true one is always among the top 5
    for b in batches[1:]:
        mine = [i["energy_j"] for i in items if i["batch"] == b["batch"]]
        assert mine == pytest.approx([b["energy_j"] / 8] * 8)


def test_detection_with_a_generated_coco_file(gpu: GpuSpec, tmp_path: Path) -> None:
    torch = need("torch", "vision")
    need("pycocotools", "vision")
    image = need("PIL.Image", "vision")
    (tmp_path / "images").mkdir()
    images, anns = [], []
    for i in range(6):
        pixels = torch.full((64, 64, 3), 30, dtype=torch.uint8)
        pixels[8 + i : 40 + i, 10:50] = 220
        image.fromarray(pixels.numpy()).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        anns.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1 + i % 2,
                "bbox": [10, 8 + i, 40, 32],
                "area": 1280,
                "iscrowd": 0,
            }
        )
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    task = {
        "kind": "object-detection",
        "model": "fasterrcnn_mobilenet_v3_large_320_fpn",
        "weights": "random",
        "data": str(tmp_path / "images"),
        "annotations": str(tmp_path / "ann.json"),
        "batch_size": 2,
        "warmup_batches": 1,
    }
    run, batches, items = _bench(tmp_path, task)
    _check_energy(gpu, run, batches)
    s = run["summary"]
    assert [i["image_id"] for i in items] == [3, 4, 5, 6]
    assert s["detections"] == sum(i["detections"] for i in items)
    assert 0.0 <= s["map"] <= 1.0 and s["accuracy"] == s["map"] and run["task"]["num_classes"] == 3
    # The scoring path on its own: detections equal to the ground truth (boxes as the model gives them, x0 y0 x1
    # y1) score mAP 1, one box off by a category scores less.
    from fastmeter.tasks.base import BatchResult
    from fastmeter.tasks.config import validate_task_config
    from fastmeter.tasks.detection import ObjectDetection

    det = ObjectDetection(validate_task_config({"task": task}))
    perfect = [
        {
            "boxes": torch.tensor([[10.0, 8.0 + i, 50.0, 40.0 + i]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1 + i % 2]),
        }
        for i in range(6)
    ]
    result = BatchResult(0, False, 0, 1, 6, ([i + 1 for i in range(6)], perfect))
    assert det.score([result]).figures["map"] == pytest.approx(1.0)
    perfect[0]["labels"] = torch.tensor([2])
    assert det.score([result]).figures["map"] < 1.0


def test_tiny_llama_generation_attributes_tokens(gpu: GpuSpec, tmp_path: Path) -> None:
    need("transformers", "hf")
    from tests.servers.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "tiny")
    prompts = [f"the model {i} said power and energy" * (1 + i % 3) for i in range(6)]
    budgets = [8, 3] * 3  # every second prompt asks for 3 tokens: its item ends there while its batch goes on
    lines = [{"prompt": p, "max_tokens": b} for p, b in zip(prompts, budgets)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run, batches, items = _bench(
        tmp_path,
        {
            "kind": "text-generation",
            "model": str(model_dir),
            "weights": "random",
            "data": str(tmp_path / "prompts.jsonl"),
            "batch_size": 2,
            "max_new_tokens": 8,
            "warmup_batches": 1,
            "precision": "bf16",
        },
    )
    _check_energy(gpu, run, batches)
    s, attribution = run["summary"], run["attribution"]
    assert attribution["method"] == "time-share" and len(items) == 4
    assert s["output_tokens"] == sum(i["completion_tokens"] for i in items) and 4 <= s["output_tokens"] <= 22
    assert all(1 <= i["completion_tokens"] <= b for i, b in zip(items, budgets[2:]))
    ttft = sorted(i["ttft_ms"] for i in items)
    assert s["ttft_ms_p50"] == pytest.approx((ttft[1] + ttft[2]) / 2) and 0 < s["ttft_ms_p50"] <= s["e2e_ms_p50"]
    # The items' energies and the idle time between them add up to the span's energy (one curve).
    assert math.fsum(i["energy_j"] for i in items) + attribution["idle_j"] == pytest.approx(attribution["total_j"])
    assert attribution["total_j"] == pytest.approx(s["energy_j"], rel=1e-9)
    for i in items:
        b = batches[i["batch"]]
        assert b["t0_ns"] == i["send_ns"] < i["first_token_ns"] <= i["end_ns"] <= b["t1_ns"]
        assert i["prefill_energy_j"] + i["decode_energy_j"] == pytest.approx(i["energy_j"])
        assert i["prefill_energy_j"] > 0


def test_a_missing_optional_library_names_what_to_install(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    need("torchvision", "vision")  # so that timm is the one library missing
    image = need("PIL.Image", "vision")
    (tmp_path / "data" / "a").mkdir(parents=True)
    image.new("RGB", (8, 8)).save(tmp_path / "data" / "a" / "0.png")
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f'[task]\nkind = "image-classification"\nmodel = "timm:resnet18"\nweights = "random"\n'
        f'data = "{tmp_path / "data"}"\n'
    )
    result = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "pip install timm" in result.output, result.output
    assert not (tmp_path / "run").exists()

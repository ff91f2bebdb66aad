"""`python -m workers.devices`: the devices each installed engine library can see, as one JSON object
on stdout. The gateway runs it (it imports no engine) for GET /system/info."""

from __future__ import annotations

import json
import sys


def _openvino() -> dict[str, object]:
    import openvino

    core = openvino.Core()
    devices = {name: core.get_property(name, "FULL_DEVICE_NAME") for name in core.available_devices}
    return {"version": openvino.__version__, "devices": devices}


def _onnxruntime() -> dict[str, object]:
    import onnxruntime

    return {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}


def _torch() -> dict[str, object]:
    import torch

    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"version": torch.__version__, "cuda": cuda}


def seen() -> dict[str, object]:
    found: dict[str, object] = {}
    for name, probe in (("openvino", _openvino), ("onnxruntime", _onnxruntime), ("torch", _torch)):
        try:
            found[name] = probe()
        except ImportError:
            found[name] = {"error": "not installed"}
        except Exception as exc:  # a broken driver is an answer here, not a crash
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return found


if __name__ == "__main__":
    json.dump(seen(), sys.stdout)

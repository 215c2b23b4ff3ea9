"""Reading this machine's GPUs from ``nvidia-smi -L`` (mlplatform_server/gpus.py)."""

from __future__ import annotations

from mlplatform_server.gpus import parse_nvidia_smi_list, restrict_to_visible, shortage

LISTING = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-1111-2222-3333-444444444444)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbbbbbb-1111-2222-3333-444444444444)
  MIG 1g.10gb     Device  0: (UUID: MIG-cccccccc-1111-2222-3333-444444444444)
GPU 2: Tesla T4 (UUID: GPU-dddddddd-1111-2222-3333-444444444444)
"""


def test_every_gpu_line_is_read_and_mig_lines_are_not_gpus():
    gpus = parse_nvidia_smi_list(LISTING)
    assert [(g.index, g.name) for g in gpus] == [(0, "NVIDIA H100 80GB HBM3"), (1, "NVIDIA H100 80GB HBM3"),
                                                 (2, "Tesla T4")]
    assert gpus[2].uuid == "GPU-dddddddd-1111-2222-3333-444444444444"
    assert parse_nvidia_smi_list("NVIDIA-SMI has failed because it couldn't communicate with the driver") == []


def test_the_platforms_own_cuda_visible_devices_limits_what_it_hands_out():
    gpus = parse_nvidia_smi_list(LISTING)
    assert restrict_to_visible(gpus, None) == gpus
    assert [g.index for g in restrict_to_visible(gpus, "2,0")] == [2, 0]
    assert [g.index for g in restrict_to_visible(gpus, "GPU-bbbbbbbb")] == [1]  # a UUID prefix, as CUDA takes it
    assert restrict_to_visible(gpus, "") == []
    assert [g.index for g in restrict_to_visible(gpus, "1,7,0")] == [1]  # CUDA stops at an unknown entry


def test_shortage_names_the_size_and_what_the_machine_has():
    assert shortage("gpu-1", 1, 1) is None and shortage("cpu-small", 0, 0) is None
    assert shortage("gpu-1", 1, 0) == "hardware size gpu-1 asks for 1 GPU, but no NVIDIA GPU on this machine " \
                                      "(nvidia-smi not found or failing)"
    assert shortage("gpu-4", 4, 2) == "hardware size gpu-4 asks for 4 GPUs, but this machine has 2"

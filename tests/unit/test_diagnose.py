"""Why a job died: the one line gflow/launcher/diagnose.py finds in the tail of a job's log."""

from __future__ import annotations

import os

import pytest

from gflow.launcher.diagnose import TAIL_BYTES, diagnose, explain_exit, read_tail

TORCH_OOM = """\
epoch 3 step 1200 loss 0.41
Traceback (most recent call last):
  File "/home/alice/train.py", line 88, in <module>
    out = model(batch)
          ^^^^^^^^^^^^
  File "/opt/torch/nn/modules/module.py", line 1736, in _call_impl
    return forward_call(*args, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a \
total capacity of 79.19 GiB of which 1.50 GiB is free. Process 4242 has 60.00 GiB memory \
in use. Of the allocated memory 16.3 GiB is allocated by PyTorch.
"""


@pytest.mark.parametrize("log, expected", [
    (TORCH_OOM, "CUDA out of memory (tried to allocate 20.00 GiB, GPU 0, 79.19 GiB total)"),
    ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 MiB (GPU 1; 23.65 GiB total "
     "capacity; 22.1 GiB already allocated)\n",
     "CUDA out of memory (tried to allocate 2.00 MiB, GPU 1, 23.65 GiB total)"),
    ("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying "
     "to allocate 1234 bytes.\n", "CUDA out of memory"),
    ("[rank1]: Traceback (most recent call last):\n[rank1]:   File \"x.py\", line 3\n"
     "[rank1]: torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, "
     "unhandled system error, NCCL version 2.20.5\n",
     "NCCL: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error, "
     "NCCL version 2.20.5"),
    ("[E ProcessGroupNCCL.cpp:475] [Rank 0] Watchdog caught collective operation timeout: "
     "WorkNCCL(SeqNum=7, OpType=ALLREDUCE) ran for 1800000 milliseconds before timing out.\n",
     "NCCL: Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, "
     "OpType=ALLREDUCE) ran for 1800000 milliseconds before timing out."),
    ("loading\n/var/spool/gflow/job.sh: line 3:  4242 Killed      python train.py\n",
     "killed (SIGKILL), most likely by the kernel's out-of-memory killer"),
    ("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n"
     "    main()\nValueError: learning rate must be positive\n",
     "ValueError: learning rate must be positive"),
    ("Traceback (most recent call last):\n  File \"a.py\", line 2\nKeyError: 'x'\n\n"
     "During handling of the above exception, another exception occurred:\n\n"
     "Traceback (most recent call last):\n  File \"a.py\", line 4\n"
     "mypkg.errors.ConfigError: no such dataset\nwandb: Synced 3 files\n",
     "mypkg.errors.ConfigError: no such dataset"),
    ("RuntimeError: CUDA error: device-side assert triggered\n",
     "CUDA error: device-side assert triggered"),
    ("bash: line 1: 77 Segmentation fault      (core dumped) ./solver\n", "Segmentation fault"),
    ("all went well\n", None),
    ("", None),
])
def test_causes(log, expected):
    assert diagnose(log) == expected


def test_the_diagnosis_is_one_bounded_line():
    text = diagnose("Traceback (most recent call last):\n  x\nValueError: " + "v" * 5000
                    + "\x1b[2J\n")
    assert len(text) == 200 and "\n" not in text and "\x1b" not in text


def test_progress_bars_count_as_what_they_left_on_screen(tmp_path):
    log = tmp_path / "1.log"
    log.write_bytes(b"Traceback (most recent call last):\n  x\n"
                    b"50%|####\r100%|######\rValueError: late\n")
    assert read_tail(log).splitlines()[-1] == "ValueError: late"
    assert explain_exit({"exit_code": 1}, log)["detail"] == "exit code 1: ValueError: late"


def test_only_the_tail_is_read_and_never_through_a_symlink(tmp_path):
    log = tmp_path / "1.log"
    with open(log, "w") as f:
        f.write("ValueError: early and forgotten\n")
        f.write("x" * (4 * TAIL_BYTES) + "\n")
        f.write(TORCH_OOM)
    tail = read_tail(log)
    assert len(tail.encode()) <= TAIL_BYTES and tail.endswith("in use. Of the allocated "
                                                              "memory 16.3 GiB is allocated "
                                                              "by PyTorch.\n")
    link = tmp_path / "2.log"
    os.symlink(log, link)
    assert read_tail(link) == "" and read_tail(tmp_path / "missing.log") == ""
    os.mkfifo(tmp_path / "3.log")
    assert read_tail(tmp_path / "3.log") == ""       # never blocks on a planted FIFO


def test_explain_exit_only_touches_failures(tmp_path):
    log = tmp_path / "1.log"
    log.write_text(TORCH_OOM)
    ok = {"exit_code": 0, "detail": None}
    assert explain_exit(ok, log) is ok
    failed = explain_exit({"exit_code": 1, "detail": None}, log)
    assert failed["detail"] == ("exit code 1: CUDA out of memory (tried to allocate 20.00 GiB, "
                                "GPU 0, 79.19 GiB total)")
    killed = explain_exit({"exit_code": 137, "signal": 9, "detail": "killed by SIGKILL"}, log)
    assert killed["detail"].startswith("killed by SIGKILL: CUDA out of memory")
    log.write_text("line 3:  4242 Killed   python train.py\n")
    oom = explain_exit({"exit_code": 137, "signal": 9, "detail": "killed by SIGKILL"}, log)
    assert oom["detail"] == "killed by SIGKILL, most likely by the kernel's out-of-memory killer"
    log.write_text("nothing to see\n")
    plain = {"exit_code": 3, "detail": None}
    assert explain_exit(plain, log) is plain


def test_our_wrappers_reason_wins():
    from gflow.launcher.diagnose import diagnose
    assert diagnose("gflow: conda not found (--conda-env ml)\n") == (
        "conda not found (--conda-env ml)")
    assert diagnose("x\ngflow: conda activate ml failed\n") == "conda activate ml failed"

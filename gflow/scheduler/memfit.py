"""GPU memory that really fits: a job asking `--gpu-memory` goes only where that much is free now, other programs' use counted (pure)."""

# The policy asks `fits` for every GPU it would otherwise give a job, and `take` for the
# GPUs it gives, so two jobs placed in one pass do not both count on the same free
# memory. `Gpu.free_mb` is what the driver says is free at the last poll (None: not
# known, e.g. simulated GPUs without simulated usage: then only the old rules apply).

from __future__ import annotations

from typing import Optional

from gflow.parsing import format_memory


def gib(mb: int) -> str:
    """Free memory as the waiting reason shows it: always one decimal ("30.0G")."""
    return f"{mb / 1024:.1f}G" if mb >= 1024 else f"{mb}M"


class MemoryFit:
    """One pass's view of free GPU memory."""

    def __init__(self):
        self.placed: dict[int, int] = {}          # GPU -> MB given to jobs in this pass
        self.missed: dict[int, list] = {}         # job id -> [(GPU, MB free)]

    def available(self, gpu) -> Optional[int]:
        free = getattr(gpu, "free_mb", None)
        if free is None:
            return None
        return max(0, free - self.placed.get(gpu.index, 0))

    def fits(self, cand, gpu) -> bool:
        """Whether `cand`'s per-GPU memory request fits what `gpu` has free now."""
        want = cand.gpu_memory_mb
        if not want:
            return True
        free = self.available(gpu)
        if free is None or want <= free:
            return True
        self.missed.setdefault(cand.id, []).append((gpu.index, free))
        return False

    def take(self, cand, gpu_ids) -> None:
        if cand.gpu_memory_mb:
            for g in gpu_ids:
                self.placed[g] = self.placed.get(g, 0) + cand.gpu_memory_mb

    def shortfall(self, cand) -> str:
        """"; GPU 1 has 30.0G free, 82G requested" for the roomiest GPU that was too
        small for the job (nothing when memory was not what kept it waiting)."""
        missed = self.missed.get(cand.id)
        if not missed:
            return ""
        index, free = max(missed, key=lambda m: (m[1], -m[0]))
        text = f"; GPU {index} has {gib(free)} free, {format_memory(cand.gpu_memory_mb)} requested"
        if len(missed) > 1:
            text += f" ({len(missed)} GPUs too full)"
        return text

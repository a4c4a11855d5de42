"""Request handlers for the GPU view: which GPUs exist and are free, and which may be used."""

from __future__ import annotations

from gflow.scheduler.reply import Reply, error


class GpuOps:
    """Mixed into `SchedulerCore`: reads its `gpu_view` (kept by `refresh_gpus`) and the
    GPUs its running and draining jobs hold."""

    def op_info(self, _payload) -> Reply:
        held_excl, held_shared = set(), set()
        for jid in self.running | self.draining:
            job = self.jobs[jid]
            (held_shared if job.is_shared else held_excl).update(job.gpu_ids or ())
        gpus = []
        uuids = {g.index: g.uuid for g in self.gpu_inventory.poll()}
        for g in self.gpu_view:
            entry = {"uuid": uuids.get(g.index, f"GPU-{g.index}"), "index": g.index}
            if g.index in held_excl:
                entry["available"] = False
            elif g.index in held_shared:
                entry["available"] = True
            else:
                entry["available"] = not g.foreign
                if g.foreign:
                    entry["reason"] = "Unmanaged"
            gpus.append(entry)
        return Reply(200, {"gpus": gpus, "allowed_gpu_indices": self.allowed_gpu_indices,
                           "gpu_allocation_strategy":
                               self.config.daemon.gpu_allocation_strategy})

    def op_set_gpus(self, payload) -> Reply:
        indices = payload.get("allowed_indices")
        n = len(self.gpu_view)
        if indices is not None:
            if not isinstance(indices, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
                return error(400, "allowed_indices must be a list of GPU indices or null")
            bad = [i for i in indices if i >= n]
            if bad:
                return error(400, f"Invalid GPU indices [{', '.join(map(str, bad))}] "
                                  f"(only {n} GPUs detected)")
        self.allowed_gpu_indices = indices
        self.save_meta(allowed_gpu_indices=indices)
        self.pass_needed = True
        return Reply(200, {"allowed_gpu_indices": indices})

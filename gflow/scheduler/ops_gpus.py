"""Request handlers for the GPU view: which GPUs exist and are free, and which may be used."""

from __future__ import annotations

from gflow.scheduler.reply import Reply, error


class GpuOps:
    """Mixed into `SchedulerCore`: reads its `gpu_view` (kept by `refresh_gpus`) and the
    GPUs its running and draining jobs hold."""

    # `GET /info` keeps 0.4.13's keys. `available` means "a new exclusive job could take
    # this GPU now": false while any gflow job holds it, shared jobs included (0.4.13 said
    # true for a shared GPU, so its ginfo listed a busy GPU as idle); whether more shared
    # jobs fit is told by our extra keys `shared_jobs`, `shared_memory_mb` and `memory_mb`
    # (only on GPUs that shared jobs hold). Extra top-level keys: `allowed_gpu_source`
    # (where the allow-list comes from) and `reservations` (live ones, soonest first).
    # 0.4.13's clients ignore unknown keys (spec/api.md §7).

    def op_info(self, _payload) -> Reply:
        # Ours too: state, memory, utilisation and processes per GPU (ops_gpu_insight.py).
        extras = self.gpu_extras()
        held_excl = set()
        shared: dict[int, list] = {}
        for jid in self.running | self.draining:
            job = self.jobs[jid]
            for g in job.gpu_ids or ():
                if job.is_shared:
                    shared.setdefault(g, []).append(job)
                else:
                    held_excl.add(g)
        gpus = []
        uuids = {g.index: g.uuid for g in self.gpu_inventory.poll()}
        for g in self.gpu_view:
            entry = {"uuid": uuids.get(g.index, f"GPU-{g.index}"), "index": g.index}
            if g.index in held_excl:
                entry["available"] = False
            elif g.index in shared:
                jobs = sorted(shared[g.index], key=lambda j: j.id)
                entry.update(available=False, shared_jobs=[j.id for j in jobs],
                             shared_memory_mb=sum(j.gpu_memory_limit_mb or 0 for j in jobs),
                             memory_mb=g.memory_mb)
            else:
                entry["available"] = not g.foreign
                if g.foreign:
                    entry["reason"] = "Unmanaged"
            entry.update(extras.get(g.index, {}))
            gpus.append(entry)
        return Reply(200, {"gpus": gpus, "allowed_gpu_indices": self.allowed_gpu_indices,
                           "gpu_allocation_strategy":
                               self.config.daemon.gpu_allocation_strategy,
                           "allowed_gpu_source": self.allowed_gpu_source,
                           "reservations": self.live_reservations(),
                           # "slurm": the GPUs above are this machine's, not the cluster's
                           "executor": self.config.executor.kind})

    def live_reservations(self) -> list:
        """Pending and active reservations, for ginfo: who holds which GPUs, and when."""
        from gflow.reservations import LIVE
        now = self.clock()
        out = []
        for r in sorted(self.reservations.values(), key=lambda r: (r.start_time, r.id)):
            if r.status in LIVE and r.end_time > now:
                indices = r.gpu_spec.get("indices")
                out.append({"id": r.id, "user": r.user,
                            "gpu_count": len(indices) if indices else r.gpu_spec.get("count", 0),
                            "gpu_indices": list(indices) if indices else None,
                            "start_time": r.start_time, "end_time": r.end_time,
                            "active": r.start_time <= now})
        return out

    def start_gpu_restriction(self, persisted) -> None:
        """At load. Precedence: `--gpus` > GFLOW_DAEMON_GPUS > config `gpus` (all three
        arrive as config.daemon.gpus) > the last `gctl set-gpus` > every GPU. Only the
        last is persisted: a restriction from the config ends with the config line
        (0.4.13 persists whichever list was in force and lets it win, W16)."""
        import os
        self.set_gpus_indices = persisted
        configured = self.config.daemon.gpus
        if configured is not None:
            self.allowed_gpu_indices = list(configured)
            if getattr(self, "gpus_from_cli", False):
                self.allowed_gpu_source = "cli"
            elif os.environ.get("GFLOW_DAEMON_GPUS", "").strip():
                self.allowed_gpu_source = "env"
            else:
                self.allowed_gpu_source = "config"
        else:
            self.allowed_gpu_indices = persisted
            self.allowed_gpu_source = "default" if persisted is None else "set-gpus"

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
        self.allowed_gpu_indices = self.set_gpus_indices = indices
        self.allowed_gpu_source = "set-gpus"
        self.save_meta(allowed_gpu_indices=indices)
        self.pass_needed = True
        return Reply(200, {"allowed_gpu_indices": indices})

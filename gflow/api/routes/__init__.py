"""The API's Flask blueprints, one per resource, in the order create_app registers them."""

from __future__ import annotations

from gflow.api.routes import (debug, events, gpus, info, job_extras, jobs, quotas,
                              reservations)

BLUEPRINTS = (info.bp, jobs.bp, gpus.bp, reservations.bp, debug.bp, events.bp,
              job_extras.bp, quotas.bp)

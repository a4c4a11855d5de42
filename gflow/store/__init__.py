"""The durable store: gflow 0.4.13's `state.msgpack` snapshot plus our CRC-framed write-ahead log `state.wal`."""

# The package's public names, so that callers keep importing them from gflow.store:
#   snapshot.py   StoreState and its codec (0.4.13's msgpack layout, legacy state.json)
#   wal.py        the write-ahead log (framing, replay, torn tails, group commit)
#   recovery.py   recovery mode (copies aside, the journal state.journal.jsonl, read-only)
#   fileio.py     the file primitives those share (atomic write, fsync of a directory)
#   fastload.py   state.msgpack.jobs: our own snapshot's jobs again, in the fastest form
#   store.py      the Store class that ties them together
# Import order follows the layering inside the package: snapshot and fileio import
# nothing from it, fastload only those two, wal and recovery those, store all of them.

from gflow.store.fileio import trim_heap
from gflow.store.recovery import JOURNAL_NAME, encode_journal
from gflow.store.snapshot import (
    LEGACY_NAME, RUNTIME_EXTRA_KEYS, RUNTIME_KEYS, SNAPSHOT_NAME, SPEC_EXTRA_KEYS, SPEC_KEYS,
    STATE_VERSION, StoreState, normalize_job, normalize_reservation,
    state_path_for,
)
from gflow.store.store import Store
from gflow.store.wal import WAL_NAME

__all__ = [
    "JOURNAL_NAME", "LEGACY_NAME", "RUNTIME_EXTRA_KEYS", "RUNTIME_KEYS", "SNAPSHOT_NAME",
    "SPEC_EXTRA_KEYS", "SPEC_KEYS", "STATE_VERSION", "Store", "StoreState", "WAL_NAME",
    "encode_journal", "normalize_job", "normalize_reservation",
    "state_path_for", "trim_heap",
]

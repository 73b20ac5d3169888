"""One undo-on-error mechanism: what a failing block wrote into an AnnData or MuData is taken back."""

from __future__ import annotations

import contextlib

#: the mapping slots of an AnnData/MuData that scsiam writes to
SLOTS = ("obs", "obsm", "obsp", "uns")


@contextlib.contextmanager
def restored_on_error(data):
    """Undo what a failing block wrote into ``data.obs`` / ``obsm`` / ``obsp`` / ``uns`` (AnnData or MuData).

    Set-up, registration and the final writes of ``tl`` change an object in several steps; when
    a later step raises (``KeyboardInterrupt`` included), the earlier writes are removed and
    replaced values are put back, so a failed call leaves the object as it was. For a MuData its
    modalities are restored as well. ``None``, views (refused before anything is written) and
    objects without these slots pass through.
    """
    stores = {} if data is None or getattr(data, "is_view", False) else _stores(data)
    if not stores:
        yield
        return
    with contextlib.ExitStack() as stack:
        for mod in (getattr(data, "mod", None) or {}).values():
            stack.enter_context(restored_on_error(mod))
        before = {slot: _snapshot(store) for slot, store in stores.items()}
        try:
            yield
        except BaseException:
            for slot, store in stores.items():
                _restore(store, before[slot])
            raise


def write_atomically(target, **slots: dict) -> None:
    """Write ``{key: value}`` entries into the slots of ``target`` (``obsm=``, ``obs=``, ``uns=``), all or none."""
    with restored_on_error(target):
        for slot, entries in slots.items():
            store = getattr(target, slot)
            for k, v in entries.items():
                store[k] = v


def _stores(data) -> dict:
    return {slot: getattr(data, slot) for slot in SLOTS if getattr(data, slot, None) is not None}


def _keys(store) -> list:
    """Columns of a data frame (``obs``), keys of a mapping (``obsm``, ``obsp``, ``uns``)."""
    return list(store.columns) if hasattr(store, "columns") else list(store.keys())


def _snapshot(store) -> dict:
    return {k: store[k] for k in _keys(store)}


def _same(a, b) -> bool:
    return a.equals(b) if hasattr(a, "equals") and hasattr(b, "equals") else a is b


def _restore(store, old: dict) -> None:
    for k in [k for k in _keys(store) if k not in old]:
        del store[k]
    for k, v in old.items():
        if k not in _keys(store) or not _same(store[k], v):
            store[k] = v

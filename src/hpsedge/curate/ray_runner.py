"""The curation job on Ray Data: an actor pool, one Predictor per actor, one shard per task.

``run_ray`` turns the shards still to do into a Ray Dataset (one row per shard: its index and its images
with their boxes, as JSON), maps it with :class:`ShardWorker` on an actor pool (``concurrency`` actors,
each holding one loaded Predictor for its lifetime, one CPU each) and streams the results back to the
driver, which writes each shard file as soon as it arrives. So an interrupted run keeps every shard that
reached the driver, and the next run skips them (:func:`hpsedge.curate.core.curate`). The workers compute
exactly what the single-process path computes (:func:`hpsedge.curate.core.process_items`).

Cluster notes: ``ray="local"`` (or ``"auto"`` / ``""``) starts Ray on this machine unless ``ray.init`` was
already called (then that session is reused and left running); ``"ray://head:10001"`` (or any address
``ray.init`` takes) connects to a running cluster. Workers read the export folder and the images by the
paths given, so on a real cluster they must be on storage every node sees, and ``hpsedge`` must be
installed on the nodes (or shipped with ``runtime_env``). Only the driver writes to ``out``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.curate.shards import Item, ProgressFn, process_items, shard_path, shard_to_bytes
from hpsedge.errors import HpsedgeError
from hpsedge.runtime.files import atomic_write

log = logging.getLogger(__name__)

LOCAL = ("local", "auto", "")


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise HpsedgeError("--ray needs Ray Data", hint="pip install 'hpsedge[ray]' (or: pip install 'ray[data]')") from exc
    return ray


class ShardWorker:
    """Ray Data actor: loads the Predictor once, then turns shard rows into shard files' bytes."""

    def __init__(self, export_dir: str, load_kwargs: dict[str, Any], root: str, shard_size: int,
                 round_boxes: bool = False) -> None:
        from hpsedge.runtime.predictor import Predictor

        self.predictor = Predictor.load(export_dir, **load_kwargs)
        self.root = Path(root)
        self.shard_size = shard_size
        self.round_boxes = round_boxes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for idx, payload in zip(batch["shard"].tolist(), batch["items"].tolist(), strict=True):
            items: list[Item] = [(name, np.asarray(b, dtype=np.float64).reshape(-1, 4)) for name, b in json.loads(payload)]
            arrays = process_items(self.predictor, self.root, items, first_index=int(idx) * self.shard_size,
                                   round_boxes=self.round_boxes)
            out.append(shard_to_bytes(arrays))
        return {"shard": batch["shard"], "data": np.array(out, dtype=object)}


def run_ray(
    address: str,
    export_dir: Path,
    load_kwargs: dict[str, Any],
    root: Path,
    shards: list[list[Item]],
    todo: list[int],
    shard_size: int,
    out: Path,
    num_actors: int | None,
    progress: ProgressFn | None,
    round_boxes: bool = False,
) -> None:
    """Compute shards ``todo`` on Ray Data and write them under ``out`` (see the module docstring)."""
    ray = _ray()
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled" chatter
    started = False
    if not ray.is_initialized():
        try:
            if address in LOCAL:
                ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            else:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # connection refused, bad address, ...
            raise HpsedgeError(f"cannot start or reach Ray at {address or 'local'} ({exc.__class__.__name__}: {exc})") from None
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(num_actors or cpus, len(todo), cpus))
        kwargs = dict(load_kwargs)
        if kwargs.get("threads") is None:
            kwargs["threads"] = 1  # one CPU per actor: do not oversubscribe
        rows = [
            {"shard": i, "items": json.dumps([(name, np.asarray(b).tolist()) for name, b in shards[i]])} for i in todo
        ]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        with warnings.catch_warnings():
            # Ray ≥ 2.5x warns that extra actor options (max_restarts) go through `ray_remote_args`
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(
                ShardWorker,
                fn_constructor_kwargs={"export_dir": str(Path(export_dir).resolve()), "load_kwargs": kwargs,
                                       "root": str(Path(root).resolve()), "shard_size": shard_size,
                                       "round_boxes": round_boxes},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                # no actor restarts: Ray's core worker otherwise prints an error-looking warning on every run
                # (constructor arguments in the object store); a lost actor fails the job, and running it again
                # resumes from the shards already written
                max_restarts=0,
                num_cpus=1,
                batch_format="numpy",
            )
        total = sum(len(shards[i]) for i in todo)
        done = 0
        t0 = time.perf_counter()
        log.info("Ray: %d shards on %d actors", len(todo), actors)
        for row in ds.iter_rows():
            i = int(row["shard"])
            atomic_write(shard_path(out, i), bytes(row["data"]))
            done += len(shards[i])
            if progress is not None:
                progress(done, total, done / max(time.perf_counter() - t0, 1e-9))
    except HpsedgeError:
        raise
    except Exception as exc:
        err = exc
        # a user error raised in a worker arrives wrapped; surface its one-line message
        while err is not None and not isinstance(err, HpsedgeError):
            err = err.__cause__ or getattr(err, "cause", None)
        if isinstance(err, HpsedgeError):
            raise err from None
        raise
    finally:
        if started:
            ray.shutdown()

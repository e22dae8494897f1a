"""The SMPL body model in numpy: everything precomputed at load, a forward pass of a few large array operations.

:class:`SMPL` precomputes, in float32 (from the file's float64)::

    basis  [K, C·3·Vc]        K = 1 + num_betas + 207 rows: [template − posedirs·vec(I); shapedirs; posedirs]; the
                              columns grouped per vertex chunk c (C chunks of Vc vertices) as (chunk, xyz, vertex),
                              so that one GEMM over any run of chunks gives the posed rest mesh for all bodies,
                              coeff = [1, betas, vec(R_1..R_23)] (the −I of the pose feature R − I is folded into
                              the template)
    skin   [25, C·Vc]         LBS weights transposed, plus a row of ones that carries ``transl`` exactly
    jbasis [1+num_betas, 72]  rest joints = J_regressor·(template + shapedirs·betas), folded: one tiny GEMM from
                              the betas, no vertex touched

``forward`` is then: rest joints → forward kinematics by pointer doubling over the kinematic tree (4 batched 4×4
matmuls for SMPL's depth of 9; level by level for large batches) → the 3×4 skinning affines A [12·B, 25] (rows:
affine column k, row i, body b) → per run of vertex chunks: ``X = coeff @ basis`` and ``T = A @ skin``
[4, 3, B, n], and v = T_0·X_0 + T_1·X_1 + T_2·X_2 + T_3 as five elementwise operations, the last one writing
straight into the [B, 6890, 3] output. ``return_vertices=False`` runs the same pipeline on only the vertices that
the 21 vertex joints and the extra regressor need.

Threads (:mod:`hpsedge.runtime.blas`): OpenBLAS is held at one thread for the whole call, so its own pool is never
woken and never left spinning against the next ONNX Runtime call; the vertex chunks are split into tasks that the
calling thread and ``threads − 1`` helper threads (blocking, never spinning) claim dynamically. The helpers start
on the posed rest mesh (which needs only ``coeff``) while the calling thread runs the kinematics.

At one body the call is memory-bound (the 207 pose blend shapes alone are 17 MB of float32 read once per call);
at 64 bodies it is compute-bound. Agrees with smplx 0.1.28 (float32) to about 1e-6 m. Only numpy is imported.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpsedge.errors import InputError, SMPLFileError
from hpsedge.runtime.blas import single_threaded_blas, worker_pool
from hpsedge.runtime.smpl_io import (
    JOINT_MAP_49,
    NUM_JOINTS,
    NUM_POSE_FEATURES,
    NUM_VERTS,
    VERTEX_JOINT_IDS,
    _as_file_like,
    _load_extra_regressor,
    _validate,
    load_smpl_data,
)

__all__ = ["SMPL", "SMPLOutput"]


@dataclass(frozen=True)
class SMPLOutput:
    """Result of :meth:`SMPL.forward` (float32, metres, ``transl`` included)."""

    vertices: np.ndarray | None  #: [B, 6890, 3]; None when ``return_vertices=False``
    joints: np.ndarray  #: [B, 24, 3] skeleton joints from forward kinematics
    joints45: np.ndarray  #: [B, 45, 3] the 24 joints + 21 vertex joints (smplx order)
    joints49: np.ndarray | None  #: [B, 49, 3] SPIN/POCO set; needs a 9-row ``J_regressor_extra``
    joints_extra: np.ndarray | None = None  #: [B, K, 3] the extra regressor applied to the posed mesh


def _pick_chunk(n: int, lo: int = 256, hi: int = 768) -> int:
    """A vertex-chunk length in [lo, hi] dividing ``n`` if there is one (6890 → 689), else ``hi``."""
    for c in range(hi, lo - 1, -1):
        if n % c == 0:
            return c
    return min(hi, n)


class _Affines:
    """The skinning affines, handed from the thread that computes them to the helpers that wait for them."""

    __slots__ = ("_ready", "value")

    def __init__(self) -> None:
        self._ready = threading.Event()
        self.value: np.ndarray | None = None

    def set(self, value: np.ndarray | None) -> None:
        self.value = value
        self._ready.set()

    def get(self) -> np.ndarray:
        if self.value is None:
            self._ready.wait()
            if self.value is None:
                raise RuntimeError("SMPL kinematics failed")
        return self.value


class SMPL:
    """The SMPL body model, numpy float32, all constants precomputed at load.

    ``SMPL(model, num_betas=10, j_regressor_extra=None, *, threads=None, thread_mode="auto")`` where ``model`` is
    a path (official or clean ``.pkl``, ``.npz``) or the dict from :func:`load_smpl_data`; ``num_betas=None``
    keeps all the file has. ``j_regressor_extra``: None, a path (``J_regressor_extra.npy``, or a pickled array)
    or a [K, 6890] array; with K = 9 (SPIN's file) the output includes ``joints49``.

    Threads: ``threads`` (default 2 on a machine with 2+ cores, else 1) threads in all work on a call: the
    caller's and ``threads − 1`` helpers from a process-wide pool, which block when idle. In ``thread_mode``
    ``"auto"`` (or its old alias ``"ours"``) numpy's OpenBLAS is held at one thread during the call, so the
    decoder never leaves BLAS threads spinning against the next ONNX Runtime / torch call. ``"blas"`` is the old
    behaviour, kept for comparison: no helpers, and OpenBLAS threads the big GEMMs itself (as fast on an idle
    machine, but it stalls the next call of another thread pool in the process). ``threads=1``: the caller's
    thread only (still with OpenBLAS held at one thread).

    Attributes: ``faces`` int32 [13776, 3], ``parents`` int32 [24] (root −1), ``num_betas``, ``v_template``
    float32 [6890, 3], ``j_regressor`` / ``weights`` float32, ``j_regressor_extra`` float32 [K, 6890] or None.
    """

    #: batches at least this big go one cache-sized vertex chunk per task (and level-by-level kinematics);
    #: smaller ones split the mesh into ``small_batch_tasks`` runs of chunks
    parallel_min_batch = 8
    #: tasks a small batch is split into (per call; more than the threads, so a late helper costs little)
    small_batch_tasks = 4

    def __init__(
        self,
        model: str | os.PathLike[str] | Mapping[str, Any],
        num_betas: int | None = 10,
        j_regressor_extra: str | os.PathLike[str] | np.ndarray | None = None,
        *,
        threads: int | None = None,
        thread_mode: str = "auto",
        chunk_vertices: int | None = None,
    ) -> None:
        if thread_mode not in ("auto", "ours", "blas"):
            raise ValueError(f"thread_mode must be 'auto', 'ours' or 'blas', not {thread_mode!r}")
        self.thread_mode = thread_mode
        if isinstance(model, (str, os.PathLike)):
            data = load_smpl_data(model, num_betas)
        elif isinstance(model, Mapping):
            data = _validate(Path("<model dict>"), _as_file_like(model), num_betas)
        else:
            raise SMPLFileError(
                f"SMPL(...) takes a file path or the dict of load_smpl_data, not {type(model).__name__}"
            )
        self._setup(data, j_regressor_extra, threads, chunk_vertices)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        num_betas: int | None = 10,
        j_regressor_extra: str | os.PathLike[str] | np.ndarray | None = None,
        **kwargs: Any,
    ) -> SMPL:
        """Load an SMPL model file (see the class docstring)."""
        return cls(path, num_betas=num_betas, j_regressor_extra=j_regressor_extra, **kwargs)

    # ------------------------------------------------------------------------------------------ setup
    def _setup(self, data: dict[str, np.ndarray], extra: Any, threads: int | None, chunk: int | None) -> None:
        V, J = NUM_VERTS, NUM_JOINTS
        f64 = np.float64
        v_template = data["v_template"].astype(f64)
        shapedirs = data["shapedirs"].astype(f64)  # [V, 3, NB]
        posedirs = data["posedirs"].astype(f64)  # [V, 3, 207]
        j_reg = data["J_regressor"].astype(f64)  # [24, V]
        weights = data["weights"].astype(f64)  # [V, 24]
        nb = shapedirs.shape[2]
        self.num_betas = nb
        self.faces = np.ascontiguousarray(data["faces"], dtype=np.int32)
        self.parents = np.ascontiguousarray(data["parents"], dtype=np.int32)
        self.v_template = v_template.astype(np.float32)
        self.j_regressor = j_reg.astype(np.float32)
        self.weights = weights.astype(np.float32)

        # combined basis rows: [template with the −I folded in; shapedirs; posedirs], as [K, V, 3]
        eye_feat = np.tile(np.eye(3).ravel(), J - 1)  # vec(I) for joints 1..23
        template = v_template - posedirs @ eye_feat
        K = 1 + nb + NUM_POSE_FEATURES
        self._K = K
        rows = np.empty((K, V, 3), dtype=f64)
        rows[0] = template
        rows[1 : 1 + nb] = shapedirs.transpose(2, 0, 1)
        rows[1 + nb :] = posedirs.transpose(2, 0, 1)

        # V padded up to whole cache-sized chunks; basis columns ordered (chunk, xyz, vertex): the columns of any
        # run of chunks are one strided matrix for BLAS (no copy), and its product reshapes to [B, n, 3, Vc]
        vc = int(chunk) if chunk else _pick_chunk(V)
        nch = -(-V // vc)
        vpad = nch * vc
        self._vc, self._nch, self._vpad = vc, nch, vpad
        padded = np.zeros((K, vpad, 3), dtype=f64)
        padded[:, :V] = rows
        self._basis = np.ascontiguousarray(
            padded.reshape(K, nch, vc, 3).transpose(0, 1, 3, 2).reshape(K, nch * 3 * vc), dtype=np.float32
        )
        skin = np.zeros((J + 1, vpad), dtype=f64)
        skin[:J, :V] = weights.T
        skin[J, :V] = 1.0  # carries transl through the blend exactly
        self._skin = skin.astype(np.float32)

        # rest joints: J_regressor · (template + shapedirs · betas), as [1 + NB, 72]
        jb = np.empty((1 + nb, J, 3), dtype=f64)
        jb[0] = j_reg @ v_template
        jb[1:] = np.einsum("jv,vkl->ljk", j_reg, shapedirs)
        self._jbasis = jb.reshape(1 + nb, J * 3).astype(np.float32)

        # forward kinematics by pointer doubling: P_i <- P_anc(i) · P_i, anc <- anc(anc); index J is the identity
        anc = np.where(self.parents < 0, J, self.parents).astype(np.intp)
        anc = np.append(anc, J)
        steps = []
        while np.any(anc[:J] != J):
            steps.append(anc.copy())
            anc = anc[anc]
        self._fk_steps = steps
        depth = np.zeros(J, dtype=int)
        for j in range(1, J):  # no assumption that parents come before children
            p, d = int(self.parents[j]), 1
            while p > 0:
                p, d = int(self.parents[p]), d + 1
            depth[j] = d
        self._fk_levels = [
            (np.nonzero(depth == d)[0], self.parents[depth == d].astype(np.intp))
            for d in range(1, depth.max() + 1)
        ]
        base = np.zeros((J + 1, 4, 4), dtype=np.float32)
        base[:] = np.eye(4, dtype=np.float32)
        self._fk_base = base
        self._bone_parents = self.parents[1:].astype(np.intp)

        # extra regressor and the vertex subset for the joints-only path
        self.j_regressor_extra: np.ndarray | None = None
        ids = np.asarray(VERTEX_JOINT_IDS, dtype=np.intp)
        subset = set(ids.tolist())
        if extra is not None:
            reg = _load_extra_regressor(extra)
            self.j_regressor_extra = reg.astype(np.float32)
            subset |= set(np.nonzero(np.any(reg != 0, axis=0))[0].tolist())
        sub = np.array(sorted(subset), dtype=np.intp)
        self._sub = sub
        self._sub_vjoint = np.searchsorted(sub, ids)  # positions of the 21 vertex joints within the subset
        self._sub_basis = np.ascontiguousarray(
            rows[:, sub].transpose(0, 2, 1).reshape(K, 3 * len(sub)), dtype=np.float32
        )
        self._sub_skin = np.ascontiguousarray(skin[:, sub], dtype=np.float32)
        if self.j_regressor_extra is not None:
            self._extra_sub = np.ascontiguousarray(self.j_regressor_extra[:, sub])
        self._joint_map = np.asarray(JOINT_MAP_49, dtype=np.intp)
        self._vertex_joint_ids = ids

        if threads is None:
            threads = 2 if (os.cpu_count() or 1) >= 2 else 1
        self.threads = max(1, int(threads))

    # --------------------------------------------------------------------------------------- inputs
    def _inputs(self, betas: Any, pose: Any, transl: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if pose is None:
            raise InputError(
                "SMPL.forward needs a pose: [B,24,3,3] rotation matrices or [B,24,3] / [B,72] axis-angle"
            )
        pose = np.asarray(pose)
        if pose.dtype.kind not in "fiu":
            raise InputError(f"pose must be numeric, got dtype {pose.dtype}")
        if pose.ndim == 4 and pose.shape[1:] == (NUM_JOINTS, 3, 3):
            rot = pose.astype(np.float32, copy=False)
            is_rotmat = True
        elif (pose.ndim == 3 and pose.shape[1:] == (NUM_JOINTS, 3)) or (
            pose.ndim == 2 and pose.shape[1] == 3 * NUM_JOINTS
        ):
            rot = pose.reshape(-1, NUM_JOINTS, 3)
            is_rotmat = False
        else:
            raise InputError(
                f"pose has shape {tuple(pose.shape)}; expected [B,24,3,3] rotation matrices or [B,24,3] / [B,72] "
                "axis-angle (add a batch axis for one body)"
            )
        B = rot.shape[0]
        if not np.isfinite(rot).all():
            raise InputError("pose contains NaN or infinite values")
        if not is_rotmat:
            from hpsedge.runtime.rotations import axis_angle_to_rotmat

            rot = axis_angle_to_rotmat(rot.astype(np.float64)).astype(np.float32)

        if betas is None:
            b = np.zeros((B, 0), dtype=np.float32)
        else:
            b = np.asarray(betas)
            if b.dtype.kind not in "fiu":
                raise InputError(f"betas must be numeric, got dtype {b.dtype}")
            if b.ndim == 1:
                b = b[None]
            if b.ndim != 2:
                raise InputError(f"betas has shape {tuple(np.shape(betas))}; expected [B, num_betas]")
            if b.shape[1] > self.num_betas:
                raise InputError(
                    f"betas has {b.shape[1]} coefficients but the model was loaded with num_betas={self.num_betas}",
                    hint=f"load it with SMPL.load(path, num_betas={b.shape[1]}) if the file has that many",
                )
            if b.shape[0] != B:
                if b.shape[0] == 1:
                    b = np.broadcast_to(b, (B, b.shape[1]))
                else:
                    raise InputError(f"betas has batch {b.shape[0]} but pose has batch {B}")
            if not np.isfinite(b).all():
                raise InputError("betas contains NaN or infinite values")
        if transl is not None:
            t = np.asarray(transl)
            if t.dtype.kind not in "fiu":
                raise InputError(f"transl must be numeric, got dtype {t.dtype}")
            if t.ndim == 1 and t.shape == (3,):
                t = t[None]
            if t.ndim != 2 or t.shape[1] != 3:
                raise InputError(f"transl has shape {tuple(t.shape)}; expected [B, 3]")
            if t.shape[0] != B:
                if t.shape[0] == 1:
                    t = np.broadcast_to(t, (B, 3))
                else:
                    raise InputError(f"transl has batch {t.shape[0]} but pose has batch {B}")
            if not np.isfinite(t).all():
                raise InputError("transl contains NaN or infinite values")
            transl = t.astype(np.float32, copy=False)
        return b, rot, transl

    # -------------------------------------------------------------------------------------- forward
    def forward(
        self,
        betas: np.ndarray | None,
        pose: np.ndarray,
        transl: np.ndarray | None = None,
        return_vertices: bool = True,
    ) -> SMPLOutput:
        """Pose and shape the body.

        Args:
            betas: [B, n] with n <= ``num_betas`` (missing coefficients are 0), or None for the mean shape.
                A batch of 1 is broadcast to the pose batch.
            pose: [B, 24, 3, 3] rotation matrices (global orientation first), or axis-angle [B, 24, 3] / [B, 72].
            transl: None or [B, 3], added to vertices and every joint.
            return_vertices: False skips the full mesh and computes only the vertices the joints need.
        """
        betas_, rot, transl_ = self._inputs(betas, pose, transl)
        B = rot.shape[0]
        nb, K = self.num_betas, self._K
        n_extra = 0 if self.j_regressor_extra is None else self.j_regressor_extra.shape[0]
        if B == 0:
            return self._empty(return_vertices, n_extra)

        # coefficients [B, K] = [1, betas, vec(R_1..R_23)]
        coeff = np.empty((B, K), dtype=np.float32)
        coeff[:, 0] = 1.0
        nbi = betas_.shape[1]
        coeff[:, 1 : 1 + nbi] = betas_
        if nbi < nb:
            coeff[:, 1 + nbi : 1 + nb] = 0.0
        coeff[:, 1 + nb :] = rot[:, 1:].reshape(B, NUM_POSE_FEATURES)

        with contextlib.nullcontext() if self.thread_mode == "blas" else single_threaded_blas():
            if not return_vertices:
                joints, a2 = self._kinematics(coeff, rot, transl_)
                sub = self._skin_subset(coeff, a2, B)  # [B, S, 3]
                verts, vjoints = None, sub[:, self._sub_vjoint]
            else:
                verts, joints = self._mesh(coeff, rot, transl_)
                sub = verts[:, self._sub] if self.j_regressor_extra is not None else None
                vjoints = verts[:, self._vertex_joint_ids]
            joints45 = np.concatenate([joints, vjoints], axis=1)
            joints49 = extra = None
            if self.j_regressor_extra is not None:
                extra = np.matmul(self._extra_sub, sub)  # [B, K, 3]
                if n_extra == 9:
                    joints49 = np.concatenate([joints45, extra], axis=1)[:, self._joint_map]
        return SMPLOutput(
            vertices=verts, joints=joints, joints45=joints45, joints49=joints49, joints_extra=extra
        )

    __call__ = forward

    def _kinematics(
        self, coeff: np.ndarray, rot: np.ndarray, transl: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posed skeleton joints [B, 24, 3] (transl included) and the skinning affines [12·B, 25]."""
        B, J, nb = rot.shape[0], NUM_JOINTS, self.num_betas
        # rest joints [B, 24, 3]
        rest = (coeff[:, : 1 + nb] @ self._jbasis).reshape(B, J, 3)

        # forward kinematics: local [R | bone] as 4x4, composed by pointer doubling or level by level
        m = np.empty((B, J + 1, 4, 4), dtype=np.float32)
        m[:] = self._fk_base
        m[:, :J, :3, :3] = rot
        m[:, :J, :3, 3] = rest
        m[:, 1:J, :3, 3] -= rest[:, self._bone_parents]
        if rot.shape[0] < self.parallel_min_batch:  # few bodies: fewest numpy calls (4 steps for SMPL)
            for anc in self._fk_steps:
                m = m[:, anc] @ m
        else:  # many bodies: fewest 4x4 products (one per joint, level by level: 8 levels for SMPL)
            for idx, par in self._fk_levels:
                m[:, idx] = m[:, par] @ m[:, idx]
        g = m[:, :J]  # [B, 24, 4, 4] global transforms
        joints = g[:, :, :3, 3]  # posed skeleton joints

        # skinning affines A [4, 3, B, 25], rows (k, i, b) = column k, row i of body b's 3x4 affine, per joint:
        # [R_g | t_g − R_g·J_rest], and a 25th "joint" [0 | transl] whose weight is exactly 1 for every vertex
        a = np.empty((4, 3, B, J + 1), dtype=np.float32)
        a[:, :, :, :J] = g[:, :, :3, :].transpose(3, 2, 0, 1)
        a[3, :, :, :J] -= (g[:, :, :3, :3] @ rest[..., None])[..., 0].transpose(2, 0, 1)
        a[:3, :, :, J] = 0.0
        if transl is not None:
            a[3, :, :, J] = transl.T
            joints = joints + transl[:, None, :]
        else:
            a[3, :, :, J] = 0.0
            joints = np.ascontiguousarray(joints)
        return joints, a.reshape(12 * B, J + 1)

    def _tasks(self, batch: int) -> list[tuple[int, int]]:
        """Runs of vertex chunks [c0, c1), one per task."""
        nch = self._nch
        if batch >= self.parallel_min_batch:
            return [(c, c + 1) for c in range(nch)]
        n = min(nch, self.small_batch_tasks if self.threads > 1 and self.thread_mode != "blas" else 1)
        bounds = np.linspace(0, nch, n + 1).round().astype(int).tolist()
        return [(bounds[i], bounds[i + 1]) for i in range(n) if bounds[i + 1] > bounds[i]]

    def _mesh(
        self, coeff: np.ndarray, rot: np.ndarray, transl: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices [B, 6890, 3] and skeleton joints [B, 24, 3].

        The helpers (if any) start on their tasks at once: a task's first step, the posed rest mesh of its
        vertices (the big GEMM), needs only ``coeff``; they wait for the affines only after it. This thread runs
        the kinematics meanwhile (for a small batch, after the GEMM of its own first task, so that it lets go
        of the GIL at once), then claims tasks too.
        """
        batch, vpad = rot.shape[0], self._vpad
        out = np.empty((batch, vpad, 3), dtype=np.float32)
        tasks = self._tasks(batch)
        threads = 1 if self.thread_mode == "blas" else self.threads
        if threads == 1 or len(tasks) == 1:
            joints, a2 = self._kinematics(coeff, rot, transl)
            for c0, c1 in tasks:
                self._blend(self._rest_mesh(coeff, c0, c1), a2, self._dst(out, c0, c1), c0, c1)
        else:
            joints = self._mesh_threaded(coeff, rot, transl, tasks, threads, out)
        if vpad != NUM_VERTS:
            out = np.ascontiguousarray(out[:, :NUM_VERTS])
        return out, joints

    def _mesh_threaded(
        self,
        coeff: np.ndarray,
        rot: np.ndarray,
        transl: np.ndarray | None,
        tasks: list[tuple[int, int]],
        threads: int,
        out: np.ndarray,
    ) -> np.ndarray:
        """The chunk runs over this thread and the pool's helpers; returns the joints, fills ``out``.

        Small batches are *stealable*: a helper skins into its own buffer and commits it under the job's lock,
        and this thread waits for a helper's unfinished task only about as long as a task takes before running it
        itself, so a helper kept off the CPU (a busy machine, another library's spinning threads right after its
        own call) never stalls the decode.
        """
        batch, vc = coeff.shape[0], self._vc
        affines = _Affines()
        spent = [0.0, 0]  # time and count of the tasks this thread ran (for the grace period)

        def task(i: int, private: bool) -> Callable[[], None] | None:
            c0, c1 = tasks[i]
            t0 = time.perf_counter()
            x = self._rest_mesh(coeff, c0, c1)
            a2 = affines.get()
            if private:
                buf = np.empty((3, batch, c1 - c0, vc), dtype=np.float32)
                self._blend(x, a2, buf, c0, c1)
                dst = self._dst(out, c0, c1)
                return lambda: np.copyto(dst, buf)
            self._blend(x, a2, self._dst(out, c0, c1), c0, c1)
            spent[0] += time.perf_counter() - t0
            spent[1] += 1
            return None

        small = batch < self.parallel_min_batch
        job = worker_pool(threads).start(task, len(tasks), stealable=small)
        first = x_first = None
        try:
            t_first = time.perf_counter()
            if small:  # run this thread's first GEMM before the kinematics: it lets go of the GIL at once
                first = job.claim()
                if first is not None:
                    x_first = self._rest_mesh(coeff, *tasks[first])
            t_first = time.perf_counter() - t_first
            joints, a2 = self._kinematics(coeff, rot, transl)  # while the helpers run their GEMMs
        except BaseException:
            affines.set(None)  # the helpers' tasks fail fast
            with contextlib.suppress(BaseException):
                job.finish(0.0)  # no helper writes into `out` after this
            raise
        affines.set(a2)
        try:
            if first is not None:
                t0 = time.perf_counter()
                self._blend(x_first, a2, self._dst(out, *tasks[first]), *tasks[first])
                spent[0] += time.perf_counter() - t0 + t_first
                spent[1] += 1
            job.work()
        finally:
            job.finish(max(2e-4, 2.0 * spent[0] / max(1, spent[1])))
        return joints

    def _empty(self, return_vertices: bool, n_extra: int) -> SMPLOutput:
        z = np.zeros
        return SMPLOutput(
            vertices=z((0, NUM_VERTS, 3), np.float32) if return_vertices else None,
            joints=z((0, NUM_JOINTS, 3), np.float32),
            joints45=z((0, 45, 3), np.float32),
            joints49=z((0, 49, 3), np.float32) if n_extra == 9 else None,
            joints_extra=z((0, n_extra, 3), np.float32) if n_extra else None,
        )

    # ------------------------------------------------------------------------------------- skinning
    def _skin_subset(self, coeff: np.ndarray, a2: np.ndarray, B: int) -> np.ndarray:
        """Posed vertices of the joints subset: [B, S, 3]."""
        s = len(self._sub)
        x = (coeff @ self._sub_basis).reshape(B, 3, s).transpose(1, 0, 2)  # [3(k), B, S]
        t = (a2 @ self._sub_skin).reshape(4, 3, B, s)  # [k, i, B, S]
        v = (t[:3] * x[:, None]).sum(axis=0)
        v += t[3]
        return v.transpose(1, 2, 0)

    def _rest_mesh(self, coeff: np.ndarray, c0: int, c1: int) -> np.ndarray:
        """Posed rest mesh (template + shape + pose blend shapes) of chunks [c0, c1): [B, n, 3, Vc]."""
        vc = self._vc
        return (coeff @ self._basis[:, c0 * 3 * vc : c1 * 3 * vc]).reshape(coeff.shape[0], c1 - c0, 3, vc)

    def _dst(self, out: np.ndarray, c0: int, c1: int) -> np.ndarray:
        """The [3, B, n, Vc] view of ``out`` [B, Vpad, 3] for chunks [c0, c1)."""
        return out.reshape(out.shape[0], self._nch, self._vc, 3)[:, c0:c1].transpose(3, 0, 1, 2)

    def _blend(self, x: np.ndarray, a2: np.ndarray, dst: np.ndarray, c0: int, c1: int) -> None:
        """Skin the rest mesh ``x`` [B, n, 3, Vc] of chunks [c0, c1) with the affines [12·B, 25] into ``dst``
        [3, B, n, Vc]."""
        B, n, vc = x.shape[0], c1 - c0, self._vc
        t = (a2 @ self._skin[:, c0 * vc : c1 * vc]).reshape(4, 3, B, n, vc)  # blended affines, column k first
        acc = np.multiply(t[0], x[:, :, 0])  # [3(i), B, n, vc]
        tmp = np.multiply(t[1], x[:, :, 1])
        acc += tmp
        np.multiply(t[2], x[:, :, 2], out=tmp)
        acc += tmp
        np.add(acc, t[3], out=dst)

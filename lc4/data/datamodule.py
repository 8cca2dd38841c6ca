"""LightningDataModule for L-C4 training: manifests, frame folders or the synthetic video set.

Exactly one training source is chosen: ``train_manifest`` (InternVid-style clips),
``frame_root`` (frame folders / images, e.g. stage 0) or ``synthetic`` (keyword arguments of
:class:`lc4.data.synthetic.SyntheticVideoDataset`).  Validation is optional and uses
``val_manifest``, ``val_frame_root`` or ``val_synthetic``, with centred, non-random clips.

Sharding: the loaders use :class:`EpochShardSampler`, a ``DistributedSampler`` whose replica
count and rank come from the trainer's strategy (``trainer.distributed_sampler_kwargs``, the
same values Lightning would inject) or from ``num_replicas``/``rank``.  Because it already is a
``DistributedSampler``, Lightning keeps it and calls its ``set_epoch`` every epoch; it yields
``(index, epoch)`` keys, so clip sampling changes per epoch even in persistent workers.

Resuming: the training loader is a :class:`ResumableLoader`, which Lightning checkpoints (it has
``state_dict``/``load_state_dict``).  It records the epoch and how many batches of it the trainer
had finished; on resume the sampler is set to that epoch and skips those batches once, so a run
resumed mid-epoch sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import inspect
import logging
import numbers
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lc4.data.frame_folder import FrameFolderDataset
from lc4.data.video_clips import VideoClipDataset, normalize_stride

__all__ = ["VideoDataModule", "EpochShardSampler", "ResumableLoader", "collate_clips"]

log = logging.getLogger(__name__)


class EpochShardSampler(DistributedSampler):
    """A ``DistributedSampler`` that yields ``(index, epoch)`` for datasets that accept it.

    Datasets without ``accepts_epoch_index`` get plain integer indices.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool,
                 seed: int, with_epoch: bool | None = None) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas); got rank={rank}, "
                             f"num_replicas={num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        if with_epoch is None:
            with_epoch = bool(getattr(dataset, "accepts_epoch_index", False))
        self.with_epoch = with_epoch
        self._skip = 0

    def resume(self, epoch: int, skip: int) -> None:
        """Continue ``epoch`` after its first ``skip`` samples (of this rank); applies to the next pass only."""
        if epoch < 0 or skip < 0:
            raise ValueError(f"epoch and skip must be >= 0, got epoch={epoch}, skip={skip}")
        self.set_epoch(epoch)
        self._skip = skip

    def __iter__(self) -> Iterator[Any]:
        indices = list(super().__iter__())[self._skip:]
        self._skip = 0
        if not self.with_epoch:
            return iter(indices)
        epoch = self.epoch
        return ((i, epoch) for i in indices)


class ResumableLoader(DataLoader):
    """A ``DataLoader`` whose position in the epoch is saved in Lightning checkpoints.

    ``progress`` returns ``(batches of the current epoch the trainer has finished, batches in its
    epoch)`` (set by :class:`VideoDataModule`; the epoch can be shorter than the loader with
    ``limit_train_batches``); the sampler must be an :class:`EpochShardSampler`.  Lightning calls
    ``state_dict`` when it saves a checkpoint and ``load_state_dict`` before the first batch of a
    resumed run.
    """

    progress: Callable[[], tuple[int, int | None]] | None = None

    def state_dict(self) -> dict[str, int]:
        full = self._full_length()
        done, epoch_batches = self.progress() if self.progress is not None else (0, None)
        return {"epoch": int(self.sampler.epoch), "batches_done": int(done), "num_batches": full,
                "epoch_batches": int(min(epoch_batches or full, full))}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done, saved = int(state["epoch"]), int(state["batches_done"]), int(state["num_batches"])
        epoch_batches = int(state.get("epoch_batches", saved))
        full = self._full_length()
        if saved != full:  # different data, batch size or number of processes: same fraction of the epoch
            log.warning("the checkpoint's epoch had %d batches per process, this run has %d: "
                        "resuming at the same fraction of the epoch, not at the same samples", saved, full)
            done = round(done * full / saved) if saved else 0
            epoch_batches = round(epoch_batches * full / saved) if saved else full
        if done >= epoch_batches:  # the epoch was finished: the next one, from its start
            epoch, done = epoch + 1, 0
        self.sampler.resume(epoch, done * int(self.batch_size))

    def _full_length(self) -> int:
        n, b = self.sampler.num_samples, int(self.batch_size)
        return n // b if self.drop_last else -(-n // b)


def collate_clips(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (``pixel_values`` → ``(B, F, 3, H, W)``), list strings, tensorise numbers."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    keys = list(samples[0])
    for s in samples[1:]:
        if list(s) != keys:
            raise ValueError(f"cannot batch samples with different keys: {keys} vs {list(s)}")
    batch: dict[str, Any] = {}
    for key in keys:
        values = [s[key] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) != 1:
                raise ValueError(f"cannot batch {key!r}: shapes differ {sorted(shapes)}")
            batch[key] = torch.stack(values)
        elif all(isinstance(v, np.ndarray) for v in values):
            shapes = {v.shape for v in values}
            if len(shapes) != 1:
                raise ValueError(f"cannot batch {key!r}: shapes differ {sorted(shapes)}")
            batch[key] = torch.from_numpy(np.stack(values))
        elif all(isinstance(v, numbers.Number) for v in values) and not any(isinstance(v, str) for v in values):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = list(values)
    return batch


def _make_synthetic(kwargs: dict[str, Any], defaults: dict[str, Any]) -> Dataset:
    """Build the synthetic set; shared settings are filled in where its signature takes them."""
    try:  # lazy: only runs that ask for synthetic data import it
        from lc4.data.synthetic import SyntheticVideoDataset
    except ImportError as exc:
        raise ImportError(f"synthetic data needs lc4.data.synthetic.SyntheticVideoDataset: {exc}") from exc

    params = inspect.signature(SyntheticVideoDataset).parameters
    filled = {k: v for k, v in defaults.items() if k in params and k not in kwargs}
    return SyntheticVideoDataset(**filled, **kwargs)


class VideoDataModule(pl.LightningDataModule):
    """Training / validation loaders for every L-C4 stage (see module docstring).

    Args:
        train_manifest: CSV/JSONL manifest of training clips.
        val_manifest: manifest of validation clips (optional).
        frame_root: folder of frames/images to train on instead (DAVIS layout or plain folders).
        synthetic: keyword arguments of ``SyntheticVideoDataset`` to train on it instead.
        num_frames: frames per clip (N^f); 1 for image training.
        resolution: square side of the training frames.
        batch_size: clips per batch per device.
        num_workers: DataLoader worker processes (0 = load in the main process).
        seed: base seed of all sampling; each sample depends on (seed, epoch, index) only.
        shuffle: shuffle the training order.
        stride: frame stride, an int or an inclusive (min, max) range.
        random_crop: random instead of centred square crops for training.
        val_frame_root: frame folders for validation.
        val_synthetic: keyword arguments of ``SyntheticVideoDataset`` for validation
            (its seed defaults to ``seed + 1``).
        frame_captions: captions for ``frame_root``/``val_frame_root`` (JSON or CSV name → text).
        decode_threads: decoder threads per video reader.
        num_replicas: number of shards; default from the trainer's strategy, else 1.
        rank: this process's shard; default from the trainer's strategy, else 0.
        max_unreadable_fraction: stop with an error when more than this share of the videos (or
            images) tried is unreadable, counted once 20 distinct items were tried; 1 = no limit.
            Under a LightningModule that checks it itself (``LC4Module``), every rank stops together.
    """

    def __init__(
        self,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        frame_root: str | None = None,
        synthetic: dict | None = None,
        num_frames: int = 8,
        resolution: int = 256,
        batch_size: int = 2,
        num_workers: int = 4,
        seed: int = 0,
        shuffle: bool = True,
        stride: int | tuple[int, int] = (1, 4),
        random_crop: bool = False,
        val_frame_root: str | None = None,
        val_synthetic: dict | None = None,
        frame_captions: str | None = None,
        decode_threads: int = 1,
        num_replicas: int | None = None,
        rank: int | None = None,
        max_unreadable_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        train_sources = [n for n, v in (("train_manifest", train_manifest), ("frame_root", frame_root),
                                        ("synthetic", synthetic)) if v is not None]
        if len(train_sources) > 1:
            raise ValueError(f"give one training source, got {len(train_sources)}: "
                             f"{', '.join(train_sources)}")
        val_sources = [n for n, v in (("val_manifest", val_manifest), ("val_frame_root", val_frame_root),
                                      ("val_synthetic", val_synthetic)) if v is not None]
        if len(val_sources) > 1:
            raise ValueError(f"give at most one validation source, got {len(val_sources)}: "
                             f"{', '.join(val_sources)}")
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("num_frames", num_frames, 1), ("resolution", resolution, 1),
                                 ("seed", seed, 0), ("decode_threads", decode_threads, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        normalize_stride(stride)
        if isinstance(max_unreadable_fraction, bool) or not 0.0 <= float(max_unreadable_fraction) <= 1.0:
            raise ValueError("max_unreadable_fraction must be in [0, 1] (1 = no limit), "
                             f"got {max_unreadable_fraction!r}")
        if (num_replicas is None) != (rank is None):
            raise ValueError("give both num_replicas and rank, or neither")
        if num_replicas is not None and (num_replicas < 1 or not 0 <= rank < num_replicas):
            raise ValueError(f"rank must be in [0, num_replicas); got rank={rank}, "
                             f"num_replicas={num_replicas}")
        self.save_hyperparameters()
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

    # -- datasets
    def _clip_kwargs(self, train: bool) -> dict[str, Any]:
        h = self.hparams
        return dict(num_frames=h.num_frames, resolution=h.resolution, stride=h.stride,
                    random_start=train, random_crop=train and h.random_crop, seed=h.seed,
                    max_unreadable_fraction=h.get("max_unreadable_fraction", 0.05))

    def _build(self, manifest: str | None, frames: str | None, synthetic: dict | None,
               train: bool) -> Dataset | None:
        h = self.hparams
        if manifest is not None:
            return VideoClipDataset(manifest, decode_threads=h.decode_threads, **self._clip_kwargs(train))
        if frames is not None:
            return FrameFolderDataset(frames, captions=h.frame_captions, **self._clip_kwargs(train))
        if synthetic is not None:
            # disjoint seed ranges: training videos from seed·10⁷, validation 5·10⁶ further on
            offset = h.seed * 10_000_000 + (0 if train else 5_000_000)
            defaults = dict(num_frames=h.num_frames, size=h.resolution, seed_offset=offset)
            return _make_synthetic(dict(synthetic), defaults)
        return None

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the sources (every listed video must exist) before any step runs."""
        h = self.hparams
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._build(h.train_manifest, h.frame_root, h.synthetic, train=True)
            if self.train_dataset is None:
                raise ValueError("no training data: set train_manifest, frame_root or synthetic")
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._build(h.val_manifest, h.val_frame_root, h.val_synthetic, train=False)
            if stage == "validate" and self.val_dataset is None:
                raise ValueError("no validation data: set val_manifest, val_frame_root or val_synthetic")

    # -- loaders
    def shard(self) -> tuple[int, int]:
        """``(num_replicas, rank)``: explicit values, else the trainer's strategy, else (1, 0)."""
        h = self.hparams
        if h.num_replicas is not None:
            return int(h.num_replicas), int(h.rank)
        trainer = getattr(self, "trainer", None)
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        if kwargs:
            return int(kwargs["num_replicas"]), int(kwargs["rank"])
        return 1, 0

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        h = self.hparams
        replicas, rank = self.shard()
        sampler = EpochShardSampler(dataset, num_replicas=replicas, rank=rank,
                                    shuffle=train and h.shuffle, seed=h.seed,
                                    with_epoch=None if train else False)
        # Keep a short last batch when the shard is smaller than one batch, else drop it.
        drop_last = train and sampler.num_samples >= h.batch_size
        if hasattr(dataset, "raise_on_limit"):  # the module checks the limit with all ranks agreeing
            module = getattr(getattr(self, "trainer", None), "lightning_module", None)
            dataset.raise_on_limit = not getattr(module, "checks_unreadable_data", False)
        loader = (ResumableLoader if train else DataLoader)(
            dataset,
            batch_size=h.batch_size,
            sampler=sampler,
            num_workers=h.num_workers,
            collate_fn=collate_clips,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=h.num_workers > 0,
            drop_last=drop_last,
        )
        if train:
            loader.progress = self._batches_done
        return loader

    def _batches_done(self) -> tuple[int, int | None]:
        """(batches of the current epoch the trainer has finished, batches per epoch); (0, None) outside a fit."""
        trainer = getattr(self, "trainer", None)
        loop = getattr(trainer, "fit_loop", None)
        if loop is None:
            return 0, None
        per_epoch = trainer.num_training_batches
        return (int(loop.epoch_loop.batch_progress.current.processed),
                int(per_epoch) if per_epoch not in (None, float("inf")) else None)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation loader: fixed centred clips (epoch 0), no shuffling; ``[]`` without a source."""
        h = self.hparams
        if self.val_dataset is None:
            self.val_dataset = self._build(h.val_manifest, h.val_frame_root, h.val_synthetic, train=False)
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, train=False)

"""Sharded training (FSDP) for `lc4 train`: the wrap policy, the strategy, and the full-weight gather.

`--trainer.strategy fsdp` (Lightning's `FSDPStrategy`, GPUs only) works as it is: `LC4Module.setup` calls
`configure_fsdp` before Lightning wraps the model, which fills in lc4's auto-wrap policy when none
was given and checks `use_orig_params` (the frozen and trained weights of one wrapped unit must
keep their own `requires_grad`). `LC4FSDPStrategy` (`--trainer.strategy lc4_fsdp`) is the same
strategy with that policy built in; it also runs on CPU with gloo, where Lightning refuses the
string `fsdp` (the tests train that way).

What lc4 does differently under FSDP (docs/training.md, "Sharded training"):

* frozen parts stay fp32 (FSDP flattens the weights of a unit into one tensor, which needs a
  single dtype; FSDP's own mixed precision casts them for the forward);
* gradient-norm clipping goes through the root FSDP module (`clip_grad_norm_`), the only correct
  norm over sharded gradients (`LC4Module.configure_gradient_clipping`);
* exports gather the full weights on every rank (a collective) and rank 0 writes them
  (`gather_full_state_dict`);
* `SampleLogger` is skipped: no rank holds the whole model, and rank 0 alone cannot run it;
* the EMA is refused (it needs whole parameters on every rank).

DeepSpeed is not supported (`unsupported_strategy`): its bf16 mode casts the trained weights
themselves, so the EMA and exports would be rounded, and its checkpoints are folders that
`lc4 export`, `init_from` and `--ckpt_path last` do not read.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.strategies import FSDPStrategy, Strategy
from torch import nn

__all__ = ["WRAPPED_BLOCKS", "LC4FSDPStrategy", "lc4_wrap_policy", "configure_fsdp", "is_fsdp",
           "unsupported_strategy", "gather_full_state_dict"]

#: Module classes that become their own FSDP unit (all-gathered only while they run). They are
#: invoked through `forward` only (never by reading their weights from outside), which FSDP needs:
#: UNet transformer blocks (with their TDA hooks) and ResNet blocks (UNet, VAE, E^lum), CLIP /
#: MiniLM layers. Everything else (convs, embeddings, TDA and CMPF layers) lives in the root unit,
#: which is gathered for the whole training step.
WRAPPED_BLOCKS = frozenset({"BasicTransformerBlock", "ResnetBlock2D", "CLIPEncoderLayer", "BertLayer"})


def _wrap_block(module: nn.Module) -> bool:
    return type(module).__name__ in WRAPPED_BLOCKS


def lc4_wrap_policy():
    """FSDP auto-wrap policy: one unit per block named in `WRAPPED_BLOCKS`."""
    from torch.distributed.fsdp.wrap import CustomPolicy

    return CustomPolicy(_wrap_block)


def is_fsdp(strategy: Any) -> bool:
    """Whether `strategy` shards the weights with FSDP."""
    return isinstance(strategy, FSDPStrategy)


def unsupported_strategy(strategy: Any) -> str | None:
    """A one-line reason when `lc4 train` cannot run under `strategy` correctly, else None."""
    name = type(strategy).__name__
    if "deepspeed" in name.lower():
        return (f"{name} is not supported by lc4 train (its bf16 mode rounds the trained weights, so the EMA "
                "and exports would be too, and its checkpoints are folders that lc4 export, init_from and "
                "--ckpt_path last do not read); use ddp, or fsdp where memory is short (docs/training.md)")
    return None


def configure_fsdp(strategy: FSDPStrategy) -> None:
    """Make a Lightning `FSDPStrategy` fit lc4's model; call before Lightning wraps the model.

    Adds lc4's auto-wrap policy when none was given (without one FSDP makes the whole model a
    single unit and gathers all of it every step) and requires `use_orig_params` (Lightning's
    default), which lets frozen and trained weights share a unit.
    """
    if not strategy.kwargs.get("use_orig_params", False):
        raise ValueError("FSDP needs use_orig_params: true with lc4 (frozen and trained weights share wrapped "
                         "units); leave --trainer.strategy.use_orig_params at Lightning's default")
    if "auto_wrap_policy" not in strategy.kwargs:
        strategy.kwargs["auto_wrap_policy"] = lc4_wrap_policy()


class LC4FSDPStrategy(FSDPStrategy):
    """Lightning's `FSDPStrategy` with lc4's auto-wrap policy (`lc4_wrap_policy`) by default.

    `--trainer.strategy lc4.training.strategies.LC4FSDPStrategy` (with any `FSDPStrategy` option,
    e.g. `--trainer.strategy.sharding_strategy SHARD_GRAD_OP`). Unlike the string `fsdp`, a
    strategy object also runs on CPU (gloo), which is how the tests exercise it.
    """

    strategy_name = "lc4_fsdp"

    def __init__(self, *args: Any, auto_wrap_policy: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, auto_wrap_policy=auto_wrap_policy or lc4_wrap_policy(), **kwargs)
        configure_fsdp(self)

    def _setup_model(self, model: nn.Module) -> nn.Module:
        """On CPU, wrap with `device_id=cpu` (Lightning passes none, and FSDP then looks for an
        accelerator); elsewhere exactly Lightning's wrapping."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        if self.root_device.type != "cpu" or any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            return super()._setup_model(model)
        model = FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                         mixed_precision=self.mixed_precision_config,
                                         sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                                         **self.kwargs)
        policy = self.kwargs.pop("auto_wrap_policy", None)  # already applied: keep Lightning from warning
        try:
            return super()._setup_model(model)
        finally:
            if policy is not None:
                self.kwargs["auto_wrap_policy"] = policy


    # Lightning gathers full state dicts with `offload_to_cpu=True`, which crashes (segfault) when the
    # weights already are on the CPU; there the gather stays where it is. GPUs: Lightning's code.
    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self.root_device.type != "cpu" or self._state_dict_type != "full":
            return super().lightning_module_state_dict()
        with _full_state_dict_type(self.model, offload_to_cpu=False):
            return self.model.state_dict()

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        if self.root_device.type != "cpu" or self._state_dict_type != "full":
            return super().optimizer_state(optimizer)
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's
        with _full_state_dict_type(self.model, offload_to_cpu=False):
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # the standard layout, as Lightning stores it
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state


def _full_state_dict_type(root: nn.Module, offload_to_cpu: bool, rank0_only: bool = True):
    """FSDP's full-state-dict context for `root` (model and optimizer)."""
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return FSDP.state_dict_type(root, StateDictType.FULL_STATE_DICT,
                                FullStateDictConfig(offload_to_cpu=offload_to_cpu, rank0_only=rank0_only),
                                FullOptimStateDictConfig(offload_to_cpu=offload_to_cpu, rank0_only=rank0_only))


def _register() -> None:
    """`--trainer.strategy lc4_fsdp` (importing lc4.training, as `lc4 train` does, registers it)."""
    from pytorch_lightning.strategies import StrategyRegistry

    if LC4FSDPStrategy.strategy_name not in StrategyRegistry:
        StrategyRegistry.register(LC4FSDPStrategy.strategy_name, LC4FSDPStrategy,
                                  description="FSDP with lc4's auto-wrap policy (also on CPU with gloo)")


_register()


def gather_full_state_dict(strategy: Strategy) -> dict[str, torch.Tensor]:
    """The LightningModule's full state dict, gathered from the FSDP shards onto rank 0's CPU.

    A collective: every rank must call it at the same point; ranks other than 0 get an empty dict.
    Always the full (not sharded) form, whatever `state_dict_type` the checkpoints use.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    root = strategy.model
    if not isinstance(root, FSDP):
        raise ValueError(f"gather_full_state_dict needs a model wrapped by FSDP, got {type(root).__name__}")
    with _full_state_dict_type(root, offload_to_cpu=strategy.root_device.type != "cpu"):
        state = root.state_dict()
    return state if strategy.is_global_zero else {}

"""
Gradient averaging across processes: one all-reduce per optimizer step, weighted by how many samples each process had,
over minibatch counts that every process agrees on (so that every collective meets its partners).
"""

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer

from sb3_mlsh.common.sb3_internals import rollout_samples

__all__ = [
    "MasterGradientAverager",
    "SubPolicyGradientAverager",
    "SyncedMinibatches",
    "pack_weighted_gradients",
    "unpack_weighted_gradients",
]

AllReduce = Callable[[th.Tensor], None]


def pack_weighted_gradients(gradients: th.Tensor, counts: th.Tensor) -> th.Tensor:
    """
    One process's share of the weighted average of the sub-policy gradients, as one flat message to all-reduce.

    :param gradients: Per-sub-policy gradients, shape (K, n).
    :param counts: Samples of each sub-policy behind them (0: the row does not count), shape (K,).
    :return: ``[counts[k] * gradients[k] for every k, then counts]``, flat; a row with count 0 is zeros (even if its
        gradient holds NaN), so that summing the messages of all processes sums only what counts.
    """
    weights = counts.to(gradients.dtype)
    weighted = th.where(weights[:, None] > 0, gradients * weights[:, None], gradients.new_zeros(()))
    return th.cat([weighted.reshape(-1), weights])


def unpack_weighted_gradients(message: th.Tensor, n_subpolicies: int) -> tuple[th.Tensor, th.Tensor]:
    """
    :param message: The sum over processes of :func:`pack_weighted_gradients`.
    :param n_subpolicies: K.
    :return: The weighted mean gradient of each sub-policy, shape (K, n) (zeros where nobody had samples), and the total
        count of each sub-policy, shape (K,).
    """
    totals = message[-n_subpolicies:]
    sums = message[:-n_subpolicies].view(n_subpolicies, -1)
    return sums / totals.clamp(min=1)[:, None], totals


class SyncedMinibatches:
    """
    A filled rollout buffer whose :meth:`get` yields exactly ``n_minibatches`` minibatches per epoch, the same number
    on every process, so that the collective in each optimizer step has its partner on every other process.
    This process's samples are shuffled and split into ``n_minibatches`` near-equal parts; where there are fewer samples
    than parts (or ``use_samples`` is False), a part is one sample that weighs 0.

    Every other attribute is the wrapped buffer's (PPO's ``train()`` reads ``values`` and ``returns``).

    :param buffer: The filled buffer, with advantages computed.
    :param n_minibatches: Minibatches per epoch.
    :param set_weight: Called before each minibatch is yielded with the number of samples that count in it (0 or its
        size).
    :param use_samples: False: this process has no data for this update and only keeps the collectives company.
    """

    def __init__(
        self, buffer: RolloutBuffer, n_minibatches: int, set_weight: Callable[[int], None], use_samples: bool = True
    ) -> None:
        self.buffer = buffer
        self.n_minibatches = n_minibatches
        self.set_weight = set_weight
        self.use_samples = use_samples

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buffer, name)

    def get(self, batch_size: int | None = None) -> Iterator[Any]:
        """
        :param batch_size: Ignored: the minibatch size follows from the agreed number of minibatches.
        :return: ``n_minibatches`` minibatches.
        """
        buffer = self.buffer
        if not buffer.generator_ready:
            next(buffer.get(1))  # SB3 flattens the buffer on its first get()
        n_samples = buffer.buffer_size * buffer.n_envs
        parts = np.array_split(np.random.permutation(n_samples), self.n_minibatches) if self.use_samples else []
        for index in range(self.n_minibatches):
            part = parts[index] if index < len(parts) else np.zeros(0, dtype=np.int64)
            if len(part):
                self.set_weight(len(part))
                yield rollout_samples(buffer, part)
            else:
                self.set_weight(0)
                yield rollout_samples(buffer, np.random.randint(n_samples, size=1))


class SubPolicyGradientAverager:
    """
    The ``reduce_gradients`` hook of a :class:`~sb3_mlsh.mlsh.bank.SubPolicyOptimizer` in a distributed run: per
    sub-policy k, the gradient becomes ``sum_r c_rk g_rk / sum_r c_rk`` over all processes r, where ``c_rk`` is the number
    of samples of k in rank r's minibatch (0 for a rank without joint-phase data). The optimizer then clips and steps,
    identically on every rank, the sub-policies that any rank used, with the counts of all ranks.

    :param all_reduce: Sums a tensor in place over all processes.
    """

    def __init__(self, all_reduce: AllReduce) -> None:
        self.all_reduce = all_reduce
        self.weight = 1

    def set_weight(self, weight: int) -> None:
        """:param weight: 0 when the coming minibatch must not count (a process without data keeping pace)."""
        self.weight = weight

    def __call__(self, stacked_parameters: Sequence[th.Tensor], counts: np.ndarray) -> np.ndarray:
        """
        :param stacked_parameters: The bank's parameters (leading axis: the sub-policy); their gradients are replaced by
            the weighted averages.
        :param counts: This process's samples of each sub-policy in the minibatch.
        :return: The samples of each sub-policy over all processes.
        """
        n_subpolicies = stacked_parameters[0].shape[0]
        device = stacked_parameters[0].device
        weights = th.as_tensor(counts, dtype=th.float32, device=device) * float(self.weight > 0)
        gradients = th.cat(
            [
                (param.grad if param.grad is not None else th.zeros_like(param)).reshape(n_subpolicies, -1)
                for param in stacked_parameters
            ],
            dim=1,
        )
        message = pack_weighted_gradients(gradients, weights)
        self.all_reduce(message)
        mean, totals = unpack_weighted_gradients(message, n_subpolicies)
        offset = 0
        for param in stacked_parameters:
            size = param[0].numel()
            param.grad = mean[:, offset : offset + size].reshape(param.shape)
            offset += size
        return totals.cpu().numpy()


class MasterGradientAverager:
    """
    Averages a master's gradients over the ranks of its task group before each optimizer step (an optimizer step
    pre-hook), weighted by each rank's minibatch size, then clips the averaged gradient (the master PPO itself is given
    ``max_grad_norm=inf``, so that clipping happens after averaging, as for a single process's whole minibatch).

    :param all_reduce: Sums a tensor in place over the ranks of the task group.
    :param max_grad_norm: The master's gradient-norm clip.
    """

    def __init__(self, all_reduce: AllReduce, max_grad_norm: float) -> None:
        self.all_reduce = all_reduce
        self.max_grad_norm = max_grad_norm
        self.weight = 1
        self._handle: Any = None

    def set_weight(self, weight: int) -> None:
        """:param weight: Samples in the coming minibatch that count (0 for a stand-in sample)."""
        self.weight = weight

    def attach(self, optimizer: th.optim.Optimizer) -> None:
        """:param optimizer: The master's optimizer (a new one after every master reset)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = optimizer.register_step_pre_hook(self._before_step)

    def _before_step(self, optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [param for group in optimizer.param_groups for param in group["params"]]
        gradients = th.cat([(p.grad if p.grad is not None else th.zeros_like(p)).reshape(-1) for p in params])
        weight = th.tensor([float(self.weight)], device=gradients.device)
        message = pack_weighted_gradients(gradients[None], weight)
        self.all_reduce(message)
        mean, _ = unpack_weighted_gradients(message, 1)
        offset = 0
        for param in params:
            param.grad = mean[0, offset : offset + param.numel()].view_as(param).clone()
            offset += param.numel()
        if math.isfinite(self.max_grad_norm):
            th.nn.utils.clip_grad_norm_(params, self.max_grad_norm)

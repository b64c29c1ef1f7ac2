"""The sub-policy bank: K independent actor-critic networks evaluated in one batched forward pass."""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, preprocess_obs
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

__all__ = [
    "SUBPOLICY_KEY",
    "MlpPolicy",
    "MultiInputPolicy",
    "SubPolicyBankPolicy",
    "SubPolicyOptimizer",
    "subpolicy_observation_space",
]

#: Key of the one-hot master choice in Dict observations of the sub-policy learner.
SUBPOLICY_KEY = "subpolicy"


def subpolicy_observation_space(observation_space: spaces.Space, n_subpolicies: int) -> spaces.Space:
    """
    The observation space of the sub-policy learner: the env observation plus the one-hot master choice.

    :param observation_space: The env's observation space (``Box`` or ``Dict``).
    :param n_subpolicies: Number of sub-policies K.
    :return: ``Box(flat_obs_dim + K)`` for a Box, the Dict plus a ``"subpolicy"`` key for a Dict.
    """
    one_hot = spaces.Box(0.0, 1.0, shape=(n_subpolicies,), dtype=np.float32)
    if isinstance(observation_space, spaces.Dict):
        if SUBPOLICY_KEY in observation_space.spaces:
            raise ValueError(
                f"The env's Dict observation already has a key {SUBPOLICY_KEY!r}, which MLSH reserves; rename it."
            )
        return spaces.Dict({**observation_space.spaces, SUBPOLICY_KEY: one_hot})
    if isinstance(observation_space, spaces.Box):
        low = np.concatenate([observation_space.low.reshape(-1), one_hot.low]).astype(np.float32)
        high = np.concatenate([observation_space.high.reshape(-1), one_hot.high]).astype(np.float32)
        return spaces.Box(low, high, dtype=np.float32)
    raise TypeError(f"Unsupported observation space {observation_space}: MLSH supports Box and Dict observations.")


class SampleGrouping:
    """
    A batch's samples laid out by the network they go through: network k's samples fill row k of a (K, longest, ...)
    tensor, in batch order, the rest of the row padded with zeros. One batched matmul per layer then runs each network
    on its own samples only (plus the padding), instead of every network on every sample.

    Computed once per minibatch, it serves every bank (the actor's and the critic's).

    :param index: Which network each sample goes through, shape (batch,).
    :param n_banks: Number of networks K.
    """

    def __init__(self, index: th.Tensor, n_banks: int) -> None:
        one_hot = nn.functional.one_hot(index, n_banks)
        running = one_hot.cumsum(dim=0)
        self.index = index
        #: Where each sample goes in its network's row: how many samples of that network come before it.
        self.position = running.gather(1, index.unsqueeze(1)).squeeze(1) - 1
        #: Number of samples of each network, shape (K,).
        self.counts = running[-1]
        self.n_banks = n_banks
        self.longest = int(self.counts.max())

    def pad(self, features: th.Tensor) -> th.Tensor:
        """
        :param features: Inputs of shape (batch, n_in).
        :return: Each network's inputs, shape (K, longest, n_in), zero-padded.
        """
        padded = features.new_zeros(self.n_banks, self.longest, features.shape[1])
        padded[self.index, self.position] = features
        return padded

    def unpad(self, outputs: th.Tensor) -> th.Tensor:
        """
        :param outputs: Each network's outputs, shape (K, longest, n_out).
        :return: Each sample's output of its own network, shape (batch, n_out); the padding gets no gradient.
        """
        return outputs[self.index, self.position]


class _MLPBank(nn.Module):
    """
    K independent MLPs of the same shape, applied to a batch at once with one batched matmul per layer. Their
    weights are slices of the policy's parameter matrix (K rows, one per sub-policy), laid out from ``offset`` on.

    :param n_banks: Number of independent networks K.
    :param sizes: Layer sizes, input first.
    :param activation_fn: Activation between layers.
    :param offset: Column of the parameter matrix where this bank's weights begin.
    """

    def __init__(self, n_banks: int, sizes: list[int], activation_fn: type[nn.Module], offset: int = 0) -> None:
        super().__init__()
        self.n_banks = n_banks
        self.activation = activation_fn()
        self.layers: list[tuple[int, int, int]] = []  # (offset, n_in, n_out); the bias follows the weight
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.layers.append((offset, n_in, n_out))
            offset += n_in * n_out + n_out
        self.end = offset

    def initialise(self, theta: th.Tensor, output_gain: float, ortho_init: bool = True) -> None:
        """
        :param theta: The parameter matrix (K rows) to write into.
        :param output_gain: Orthogonal-init gain of the last layer (hidden layers: sqrt(2), as in SB3).
        :param ortho_init: Orthogonal initialisation; otherwise PyTorch's default for ``nn.Linear``.
        """
        with th.no_grad():
            for bank in range(self.n_banks):
                for index, (start, n_in, n_out) in enumerate(self.layers):
                    linear = nn.Linear(n_in, n_out)
                    if ortho_init:
                        nn.init.orthogonal_(linear.weight, gain=output_gain if index == len(self.layers) - 1 else np.sqrt(2))
                        nn.init.zeros_(linear.bias)
                    theta[bank, start : start + n_in * n_out] = linear.weight.t().reshape(-1)
                    theta[bank, start + n_in * n_out : start + n_in * n_out + n_out] = linear.bias

    #: From this many network-samples (K x batch) on, :meth:`selected` pads each network's samples into a row of its
    #: own (:class:`SampleGrouping`: about 1x the matmul work, plus the cost of the layout) instead of running every
    #: network on every sample (Kx the work, no layout: cheaper for the few samples of a rollout step);
    #: benchmarks/bank_forward.py measures the crossover.
    grouped_from_work = 128

    def runs_grouped(self, batch: int) -> bool:
        """
        :param batch: Number of samples.
        :return: Whether :meth:`selected` lays a batch of this size out by network (:class:`SampleGrouping`).
        """
        return self.n_banks * batch >= self.grouped_from_work

    def selected(
        self, weights: tuple[th.Tensor, ...], features: th.Tensor, index: th.Tensor, grouping: SampleGrouping | None = None
    ) -> th.Tensor:
        """
        :param weights: This bank's pieces of the parameter matrix, from :meth:`SubPolicyBankPolicy.split_theta`.
        :param features: Inputs of shape (batch, n_in).
        :param index: Which network each sample goes through, shape (batch,).
        :param grouping: ``SampleGrouping(index, K)``, when the caller already has it (it serves the actor and the critic).
        :return: Each sample's output of its own network, shape (batch, n_out).
        """
        batch = features.shape[0]
        if not self.runs_grouped(batch):
            return self(weights, features)[index, th.arange(batch, device=features.device)]
        if grouping is None:
            grouping = SampleGrouping(index, self.n_banks)
        return grouping.unpad(self(weights, grouping.pad(features)))

    def forward(self, weights: tuple[th.Tensor, ...], features: th.Tensor) -> th.Tensor:
        """
        :param weights: This bank's pieces of the parameter matrix, from :meth:`SubPolicyBankPolicy.split_theta`.
        :param features: Inputs of shape (batch, n_in), shared by all networks, or (K, batch, n_in), one batch each.
        :return: Outputs of every network, shape (K, batch, n_out).
        """
        hidden = features if features.dim() == 3 else features.unsqueeze(0).expand(self.n_banks, *features.shape)
        last = len(self.layers) - 1
        for index, (_, n_in, n_out) in enumerate(self.layers):
            weight = weights[2 * index].view(self.n_banks, n_in, n_out)
            hidden = th.baddbmm(weights[2 * index + 1].unsqueeze(1), hidden, weight)
            if index < last:
                hidden = self.activation(hidden)
        return hidden

    @property
    def widths(self) -> list[int]:
        """Widths of this bank's pieces of the parameter matrix, in order: each layer's weight, then its bias."""
        return [width for _, n_in, n_out in self.layers for width in (n_in * n_out, n_out)]


class SubPolicyOptimizer:
    """
    The optimizer of the sub-policy bank: exactly K separate policies with K optimizers. Each sub-policy is a
    parameter group of its own (its own Adam moments, step count and learning rate), its gradient norm is clipped on
    its own, and only the sub-policies present in the last minibatch are stepped, so a sub-policy without samples is
    left bit-for-bit unchanged (one shared Adam would still move it through its momentum).

    The bank keeps all K sub-policies in one parameter matrix, a row each, for a fast forward; each sub-policy's
    parameter group holds an alias of its row (same memory), whose gradient is the row of the matrix's gradient.

    With ``share_scaled_steps``, a sub-policy with fewer than its fair share (1/K) of the minibatch's samples takes a
    proportionally smaller step: learning rate ``lr * min(1, K * n_k / n)``. Every sample then moves the parameters
    about as much, whichever sub-policy it belongs to, and a sub-policy that the masters rarely pick is not dragged
    towards the current task by a handful of samples (Adam would otherwise rescale their gradient to a full step).

    :param stacked_parameters: Parameters whose leading axis indexes the sub-policy.
    :param sample_counts: Returns how many samples of each sub-policy the last minibatch had (int array of length K).
    :param optimizer_class: The optimizer (one instance, one parameter group per sub-policy; it must skip parameters
        whose gradient is None, as every ``torch.optim`` optimizer does).
    :param lr: Initial learning rate.
    :param max_grad_norm: Gradient-norm clip of each sub-policy.
    :param share_scaled_steps: Scale each sub-policy's learning rate by its share of the minibatch (see above).
    :param optimizer_kwargs: Passed on to ``optimizer_class``.
    """

    def __init__(
        self,
        stacked_parameters: list[nn.Parameter],
        sample_counts: Callable[[], np.ndarray],
        optimizer_class: type[th.optim.Optimizer],
        lr: float,
        max_grad_norm: float,
        share_scaled_steps: bool = False,
        **optimizer_kwargs: Any,
    ) -> None:
        self.stacked_parameters = stacked_parameters
        self.sample_counts = sample_counts
        self.max_grad_norm = max_grad_norm
        self.share_scaled_steps = share_scaled_steps
        self.n_subpolicies = stacked_parameters[0].shape[0]
        self.aliases = [[nn.Parameter(p.data[k]) for p in stacked_parameters] for k in range(self.n_subpolicies)]
        self.optimizer = optimizer_class(
            [{"params": aliases} for aliases in self.aliases],
            lr=lr,  # type: ignore[call-arg]  # every torch optimizer but the base class takes lr
            **optimizer_kwargs,
        )
        #: Called with the stacked parameters and this process's sample counts before each step; replaces the gradients
        #: by their average over the processes of a distributed run and returns the counts of all processes.
        self.reduce_gradients: Callable[[Sequence[th.Tensor], np.ndarray], np.ndarray] | None = None
        #: Called with the stacked parameters before each step (e.g. a finiteness check that may refuse it).
        self.before_step: Callable[[Sequence[th.Tensor]], None] | None = None

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        # SB3's learning-rate schedule writes "lr" into these dicts.
        return self.optimizer.param_groups

    def active(self) -> np.ndarray:
        """:return: Which sub-policies had samples in the last minibatch (bool array of length K)."""
        return self.sample_counts() > 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the stacked parameters and of every sub-policy's aliases."""
        for param in self.stacked_parameters:
            param.grad = None
        for aliases in self.aliases:
            for alias in aliases:
                alias.grad = None

    def step(self) -> None:
        """Clip and step each sub-policy that had samples in the last minibatch; leave the others untouched."""
        counts = self.sample_counts()
        if self.reduce_gradients is not None:
            counts = self.reduce_gradients(self.stacked_parameters, counts)
        if self.before_step is not None:  # after averaging: every process decides alike
            self.before_step(self.stacked_parameters)
        self._step_subpolicies(counts)

    def _step_subpolicies(self, counts: np.ndarray) -> None:
        """
        :param counts: Samples of each sub-policy behind the stacked gradients: sub-policies with none are left
            untouched, and with ``share_scaled_steps`` the counts set each sub-policy's step size.
        """
        if not np.any(counts > 0):
            return
        grads = [param.grad for param in self.stacked_parameters]
        if np.isfinite(self.max_grad_norm):
            squared = sum(th.linalg.vector_norm(grad.flatten(1), dim=1).square() for grad in grads if grad is not None)
            if isinstance(squared, th.Tensor):
                # As clip_grad_norm_ per sub-policy, one vectorised op for all K.
                scale = (self.max_grad_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)
                for grad in grads:
                    if grad is not None:
                        grad.mul_(scale.view(-1, *([1] * (grad.dim() - 1))))
        for index in range(self.n_subpolicies):
            for alias, param, grad in zip(self.aliases[index], self.stacked_parameters, grads):
                # Re-point at the stacked memory (it moves when the module changes device) and at the row's gradient;
                # a None gradient makes the optimizer skip the sub-policy, state included.
                alias.data = param.data[index]
                alias.grad = None if grad is None or counts[index] == 0 else grad[index]
        if not self.share_scaled_steps:
            self.optimizer.step()
            return
        base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        shares = np.minimum(1.0, self.n_subpolicies * counts / counts.sum())
        for group, share in zip(self.optimizer.param_groups, shares):
            group["lr"] = group["lr"] * float(share)
        try:
            self.optimizer.step()
        finally:
            for group, lr in zip(self.optimizer.param_groups, base_lrs):
                group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        """:return: The optimizer's state (one parameter group per sub-policy)."""
        return {"n_subpolicies": self.n_subpolicies, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """
        :param state_dict: As returned by :meth:`state_dict`, for the same number of sub-policies.
        """
        if state_dict.get("n_subpolicies") != self.n_subpolicies:
            raise ValueError(
                f"Optimizer state for {state_dict.get('n_subpolicies')} sub-policies cannot be loaded "
                f"into {self.n_subpolicies}."
            )
        # How the optimizer computes its step (fused kernel or not) belongs to this optimizer, not to the saved state.
        implementation: list[dict[str, Any]] = [
            {key: group[key] for key in ("fused", "foreach") if key in group} for group in self.param_groups
        ]
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for group, flags in zip(self.param_groups, implementation):
            group.update(flags)

    def subpolicy_state(self, index: int) -> dict[int, Any]:
        """
        :param index: Which sub-policy.
        :return: The optimizer state of its parameters (empty until its first step).
        """
        return {i: self.optimizer.state[alias] for i, alias in enumerate(self.aliases[index]) if alias in self.optimizer.state}


class SubPolicyBankPolicy(BasePolicy):
    """
    The policy of the sub-policy learner: a bank of K independent actor-critics (hidden layers, action head,
    value head and, for Box actions, the Gaussian log-std). The one-hot master choice in the observation selects
    which network acts; all K are evaluated in one batched forward, and gradients reach only the selected one.

    :param observation_space: The sub-policy observation space (see :func:`subpolicy_observation_space`).
    :param action_space: ``Discrete`` or ``Box``.
    :param lr_schedule: Learning-rate schedule.
    :param n_subpolicies: Number of sub-policies K.
    :param net_arch: Hidden sizes; a list (same for actor and critic) or ``dict(pi=[...], vf=[...])``.
    :param activation_fn: Activation function.
    :param ortho_init: Orthogonal initialisation as in SB3's ``ActorCriticPolicy``.
    :param log_std_init: Initial log-std of Gaussian actions.
    :param max_grad_norm: Gradient-norm clip, applied per sub-policy.
    :param share_scaled_steps: Scale each sub-policy's learning rate by its share of the minibatch
        (:class:`SubPolicyOptimizer`); False (default) is the paper's update, where a few samples still make a full step.
    :param use_sde: Not supported (must be False); accepted for SB3 compatibility.
    :param normalize_images: Divide image observations by 255.
    :param optimizer_class: Optimizer of each sub-policy.
    :param optimizer_kwargs: Its keyword arguments (None: for Adam, ``eps=1e-5`` as in SB3 and ``fused=True``).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        n_subpolicies: int = 2,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        max_grad_norm: float = 0.5,
        share_scaled_steps: bool = False,
        use_sde: bool = False,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if use_sde:
            raise ValueError("gSDE is not supported by the MLSH sub-policy bank; use use_sde=False.")
        if optimizer_kwargs is None:
            optimizer_kwargs = {}
            if optimizer_class == th.optim.Adam:
                # One fused kernel per sub-policy instead of a dozen element-wise ops: about half the time per step
                # (FourRooms' K = 4 bank: 125 against 237 us).
                optimizer_kwargs.update(eps=1e-5, fused=True)
        super().__init__(
            observation_space,
            action_space,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        if net_arch is None:
            net_arch = [64, 64]
        self.net_arch = net_arch
        self.n_subpolicies = n_subpolicies
        self.activation_fn = activation_fn
        self.ortho_init = ortho_init
        self.log_std_init = log_std_init
        self.max_grad_norm = max_grad_norm
        self.share_scaled_steps = share_scaled_steps
        self.env_observation_space = self._env_space()
        self.features_dim = get_flattened_obs_dim(self.env_observation_space)
        #: Samples of each sub-policy in the minibatch last evaluated (:meth:`evaluate_actions`): SB3's PPO evaluates a
        #: minibatch, then steps the optimizer, which steps only these sub-policies.
        self.minibatch_counts = np.zeros(n_subpolicies, dtype=np.int64)
        self._build(lr_schedule)

    def _env_space(self) -> spaces.Space:
        if isinstance(self.observation_space, spaces.Dict):
            return spaces.Dict({key: space for key, space in self.observation_space.spaces.items() if key != SUBPOLICY_KEY})
        assert isinstance(self.observation_space, spaces.Box)
        size = self.observation_space.shape[0] - self.n_subpolicies
        return spaces.Box(self.observation_space.low[:size], self.observation_space.high[:size], dtype=np.float32)

    def _build(self, lr_schedule: Schedule) -> None:
        pi_arch, vf_arch = (
            (self.net_arch["pi"], self.net_arch["vf"]) if isinstance(self.net_arch, dict) else (self.net_arch, self.net_arch)
        )
        if isinstance(self.action_space, spaces.Discrete):
            self.action_dist: Distribution = CategoricalDistribution(int(self.action_space.n))
            n_action_outputs = int(self.action_space.n)
        elif isinstance(self.action_space, spaces.Box):
            self.action_dist = DiagGaussianDistribution(int(np.prod(self.action_space.shape)))
            n_action_outputs = int(np.prod(self.action_space.shape))
        else:
            raise TypeError(f"Unsupported action space {self.action_space}: the sub-policy bank supports Discrete and Box.")
        k = self.n_subpolicies
        self.actor = _MLPBank(k, [self.features_dim, *pi_arch, n_action_outputs], self.activation_fn)
        self.critic = _MLPBank(k, [self.features_dim, *vf_arch, 1], self.activation_fn, offset=self.actor.end)
        self.log_std_slice: slice | None = None
        size = self.critic.end
        if isinstance(self.action_dist, DiagGaussianDistribution):
            self.log_std_slice = slice(size, size + n_action_outputs)
            size += n_action_outputs
        # Row k holds everything of sub-policy k: actor, critic and (Box actions) its own Gaussian log-std.
        self.theta = nn.Parameter(th.zeros(k, size))
        self._widths = self.actor.widths + self.critic.widths + ([n_action_outputs] if self.log_std_slice is not None else [])
        self._n_pieces = (len(self.actor.widths), len(self.critic.widths))
        self.actor.initialise(self.theta, output_gain=0.01, ortho_init=self.ortho_init)
        self.critic.initialise(self.theta, output_gain=1.0, ortho_init=self.ortho_init)
        if self.log_std_slice is not None:
            with th.no_grad():
                self.theta[:, self.log_std_slice] = self.log_std_init
        self.optimizer = SubPolicyOptimizer(  # type: ignore[assignment]
            [self.theta],
            sample_counts=lambda: self.minibatch_counts,
            optimizer_class=self.optimizer_class,
            lr=lr_schedule(1),
            max_grad_norm=self.max_grad_norm,
            share_scaled_steps=self.share_scaled_steps,
            **self.optimizer_kwargs,
        )

    def split_theta(self) -> tuple[tuple[th.Tensor, ...], tuple[th.Tensor, ...], th.Tensor | None]:
        """
        Cut the parameter matrix into the actor's and the critic's per-layer pieces (and the log-std) with one ``split``,
        whose backward assembles the gradient with one ``cat``: slicing each piece out on its own would make every
        slice's backward fill a gradient of the whole matrix.

        :return: The actor's pieces, the critic's pieces and the Gaussian log-std (None for Discrete actions).
        """
        pieces = self.theta.split(self._widths, dim=1)
        n_actor, n_critic = self._n_pieces
        log_std = pieces[-1] if self.log_std_slice is not None else None
        return pieces[:n_actor], pieces[n_actor : n_actor + n_critic], log_std

    def subpolicy_parameters(self, index: int) -> list[th.Tensor]:
        """
        :param index: Which sub-policy.
        :return: All parameters of that sub-policy (actor, critic, log-std), as a view of its row.
        """
        return [self.theta[index]]

    @property
    def log_std(self) -> th.Tensor:
        """The Gaussian log-std of every sub-policy, shape (K, action dim) (Box actions only)."""
        if self.log_std_slice is None:
            raise AttributeError("Discrete actions have no log-std.")
        return self.theta[:, self.log_std_slice]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            n_subpolicies=self.n_subpolicies,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            ortho_init=self.ortho_init,
            log_std_init=self.log_std_init,
            max_grad_norm=self.max_grad_norm,
            share_scaled_steps=self.share_scaled_steps,
        )
        return data

    def split_observation(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """
        :param obs: A batch of sub-policy observations.
        :return: The flattened env-observation features and the index of the active sub-policy of each sample.
        """
        obs = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        if isinstance(obs, dict):
            one_hot = obs[SUBPOLICY_KEY]
            assert isinstance(self.env_observation_space, spaces.Dict)
            features = th.cat([obs[key].flatten(1) for key in self.env_observation_space.spaces], dim=1)
        else:
            one_hot = obs[:, -self.n_subpolicies :]
            features = obs[:, : -self.n_subpolicies]
        return features, one_hot.argmax(dim=1)

    def _distribution(
        self,
        actor: tuple[th.Tensor, ...],
        log_std: th.Tensor | None,
        features: th.Tensor,
        index: th.Tensor,
        grouping: SampleGrouping | None = None,
    ) -> Distribution:
        action_outputs = self.actor.selected(actor, features, index, grouping)
        if isinstance(self.action_dist, DiagGaussianDistribution):
            assert log_std is not None
            return self.action_dist.proba_distribution(action_outputs, log_std[index])
        return self.action_dist.proba_distribution(action_logits=action_outputs)

    def all_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: A batch of sub-policy observations (the one-hot part is ignored).
        :return: The value of every sub-policy for every sample, shape (K, batch).
        """
        features, _ = self.split_observation(obs)
        return self.critic(self.split_theta()[1], features).squeeze(-1)

    def act(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """
        One batched forward for rollouts.

        :param obs: A batch of sub-policy observations.
        :param deterministic: Take the mode of each distribution.
        :return: Actions, values of the active sub-policies, log-probabilities, and the values of all K (K, batch).
        """
        features, index = self.split_observation(obs)
        actor, critic, log_std = self.split_theta()
        distribution = self._distribution(actor, log_std, features, index)
        actions = distribution.get_actions(deterministic=deterministic)
        all_values = self.critic(critic, features).squeeze(-1)
        values = all_values[index, th.arange(features.shape[0], device=features.device)]
        return actions, values.unsqueeze(-1), distribution.log_prob(actions), all_values

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :param obs: A batch of sub-policy observations.
        :param deterministic: Take the mode of each distribution.
        :return: Actions, values and log-probabilities, each from the sample's active sub-policy.
        """
        actions, values, log_prob, _ = self.act(obs, deterministic)
        return actions, values, log_prob

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """
        Evaluate a minibatch for PPO's loss, and note which sub-policies it contains (only those are stepped).

        :param obs: A batch of sub-policy observations.
        :param actions: The actions taken.
        :return: Values, log-probabilities and entropies under each sample's active sub-policy.
        """
        features, index = self.split_observation(obs)
        grouping = SampleGrouping(index, self.n_subpolicies) if self.actor.runs_grouped(len(index)) else None
        counts = th.bincount(index, minlength=self.n_subpolicies) if grouping is None else grouping.counts
        self.minibatch_counts = counts.cpu().numpy()
        actor, critic, log_std = self.split_theta()
        distribution = self._distribution(actor, log_std, features, index, grouping)
        values = self.critic.selected(critic, features, index, grouping)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        """
        :param obs: A batch of sub-policy observations.
        :return: The action distribution of each sample's active sub-policy.
        """
        features, index = self.split_observation(obs)
        actor, _, log_std = self.split_theta()
        return self._distribution(actor, log_std, features, index)

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        :param obs: A batch of sub-policy observations.
        :return: The value of each sample under its active sub-policy, shape (batch, 1).
        """
        features, index = self.split_observation(obs)
        return self.critic.selected(self.split_theta()[1], features, index)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)


#: Policy aliases: the sub-policy learner's bank reads flat (Box) or Dict observations.
MlpPolicy = SubPolicyBankPolicy
MultiInputPolicy = SubPolicyBankPolicy

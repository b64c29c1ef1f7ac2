"""A guard that refuses non-finite updates: no optimizer step from a NaN or inf gradient."""

from collections.abc import Callable, Iterable

import torch as th

from sb3_mlsh.type_aliases import NonFiniteError

__all__ = ["check_finite_gradients", "guard_optimizer"]


def check_finite_gradients(parameters: Iterable[th.Tensor], learner: str, iteration: int) -> None:
    """
    :param parameters: The parameters about to be stepped.
    :param learner: Which learner, for the message.
    :param iteration: The iteration being trained, for the message.
    :raises NonFiniteError: if a gradient holds NaN or inf (the caller has not stepped: parameters are unchanged).
    """
    grads = [param.grad for param in parameters if param.grad is not None]
    if grads and not bool(th.stack([th.isfinite(grad).all() for grad in grads]).all()):
        raise NonFiniteError(
            f"The {learner}'s gradient is not finite (NaN or inf) in the update of iteration {iteration}: the update was "
            "refused and its parameters are as they were. Likely source: rewards too large for float32 losses (scale "
            "them: normalize_reward=True, or gymnasium.wrappers.TransformReward), or observations with huge values "
            "(clip them, e.g. gymnasium.wrappers.ClipObservation)."
        )


def guard_optimizer(optimizer: th.optim.Optimizer, learner: str, iteration: Callable[[], int]) -> None:
    """
    Make ``optimizer.step()`` check the gradients first (one device sync per step).

    :param optimizer: A torch optimizer (e.g. a master's Adam).
    :param learner: Which learner, for the message.
    :param iteration: Returns the iteration being trained.
    """
    step = optimizer.step

    def checked_step(*args, **kwargs):
        check_finite_gradients((p for group in optimizer.param_groups for p in group["params"]), learner, iteration())
        return step(*args, **kwargs)

    optimizer.step = checked_step  # type: ignore[method-assign]

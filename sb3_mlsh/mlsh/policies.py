"""The policy names MLSH accepts, as SB3 algorithms name theirs: both are the sub-policy bank."""

from sb3_mlsh.common.bank import SubPolicyBankPolicy

__all__ = ["MlpPolicy", "MultiInputPolicy"]

#: Box observations.
MlpPolicy = SubPolicyBankPolicy
#: Dict observations.
MultiInputPolicy = SubPolicyBankPolicy

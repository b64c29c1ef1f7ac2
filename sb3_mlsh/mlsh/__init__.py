from sb3_mlsh.mlsh.mlsh import MLSH
from sb3_mlsh.mlsh.policies import MlpPolicy, MultiInputPolicy

__all__ = ["MLSH", "MlpPolicy", "MultiInputPolicy"]

"""FourRooms: the grid world of Sutton, Precup and Singh (1999) with a latent goal cell (Frans et al., 2018)."""

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mlsh_envs.state import FieldStateMixin

__all__ = ["FOUR_ROOMS_LAYOUT", "FOUR_ROOMS_PAPER_GOALS", "FOUR_ROOMS_PAPER_TEST_GOALS", "FourRoomsEnv"]

#: The 13 x 13 layout of Sutton, Precup and Singh (1999): ``w`` is a wall, 104 cells are free.
FOUR_ROOMS_LAYOUT = (
    "wwwwwwwwwwwww",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "w     w     w",
    "ww wwww     w",
    "w     www www",
    "w     w     w",
    "w     w     w",
    "w           w",
    "w     w     w",
    "wwwwwwwwwwwww",
)

#: The paper's goal distribution (Option-Critic's, and the goal list of the original code): the 20 cells of the
#: south-east room (rows 8-11, columns 7-11) and the hallway cell (10, 6) that leads into it.
FOUR_ROOMS_PAPER_GOALS: tuple[tuple[int, int], ...] = (
    *((row, col) for row in range(8, 12) for col in range(7, 12)),
    (10, 6),
)
#: The held-out goals of the paper's distribution: four cells spread over the south-east room.
FOUR_ROOMS_PAPER_TEST_GOALS: tuple[tuple[int, int], ...] = ((8, 11), (9, 8), (10, 10), (11, 7))


class FourRoomsEnv(FieldStateMixin, gym.Env):
    """
    The four-rooms grid world: 13 x 13 cells, 104 of them free, four rooms joined by four hallways.
    The agent starts in the east hallway (row 7, column 9) and moves up, down, left or right; with probability
    ``slip_prob`` (1/3) it slips to a uniformly drawn free neighbour of its cell, instead of the move (``slip_rule=
    "replace"``, as Option-Critic describes) or after it (``"after"``, as the original code does). A move into a wall
    leaves it in place. Reward is 1 on every step that ends on the goal cell; nothing terminates the episode,
    whose length (100) comes from the registered ``TimeLimit``.

    A task is a goal cell ``(row, col)``; the goal is latent (never observed), as in the paper. The start cell is
    never a goal.

    - ``goals="paper"`` (``mlsh/FourRooms-v0``): the paper's distribution, :data:`FOUR_ROOMS_PAPER_GOALS` (the
      south-east room and its west hallway, 21 cells); held out: :data:`FOUR_ROOMS_PAPER_TEST_GOALS` (4 cells),
      train: the other 17.
    - ``goals="all"`` (``mlsh/FourRoomsAllGoals-v0``, an extension beyond the paper): every free cell but the start
      (103); held out: every fifth free cell in row-major order from the third, less the start (20 cells), spread
      over all four rooms; train: the other 83.

    Observation: one-hot of the agent's free cell (104 numbers, in row-major order of the free cells), an
    input an MLP can use directly (the original's bare integer crashed its learner).
    Actions: 0 up, 1 down, 2 left, 3 right.

    :param slip_prob: Probability that a step goes to a random free neighbour.
    :param goals: ``"paper"`` (the south-east room) or ``"all"`` (every free cell but the start).
    :param slip_rule: ``"replace"`` (a slip replaces the move) or ``"after"`` (the move happens, then the slip).
    :param render_mode: ``"rgb_array"`` for a picture of the grid.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)
    START = (7, 9)

    STATE_FIELDS = ("task", "_next_task", "agent")

    def __init__(
        self, slip_prob: float = 1.0 / 3.0, goals: str = "paper", slip_rule: str = "replace", render_mode: str | None = None
    ):
        if goals not in ("paper", "all"):
            raise ValueError(f"goals must be 'paper' (the south-east room) or 'all' (every free cell), got {goals!r}.")
        if slip_rule not in ("replace", "after"):
            raise ValueError(f"slip_rule must be 'replace' or 'after', got {slip_rule!r}.")
        self.slip_prob = slip_prob
        self.goals = goals
        self.slip_rule = slip_rule
        self.render_mode = render_mode
        self.walls = np.array([[char == "w" for char in row] for row in FOUR_ROOMS_LAYOUT])
        self.cells: list[tuple[int, int]] = [(int(r), int(c)) for r, c in zip(*np.nonzero(~self.walls), strict=True)]
        self.cell_index = {cell: index for index, cell in enumerate(self.cells)}
        self.n_cells = len(self.cells)
        # Next cell for each (cell, action), and the free neighbours of each cell (for slips).
        self._next_cell = np.zeros((self.n_cells, 4), dtype=np.int64)
        self._neighbours: list[list[int]] = []
        for index, (row, col) in enumerate(self.cells):
            neighbours = []
            for action, (dr, dc) in enumerate(self.MOVES):
                target = (row + int(dr), col + int(dc))
                free = target in self.cell_index
                self._next_cell[index, action] = self.cell_index[target] if free else index
                if free:
                    neighbours.append(self.cell_index[target])
            self._neighbours.append(neighbours)
        if goals == "paper":
            self.all_goals: tuple[tuple[int, int], ...] = FOUR_ROOMS_PAPER_GOALS
            self.test_goals: tuple[tuple[int, int], ...] = FOUR_ROOMS_PAPER_TEST_GOALS
        else:
            self.all_goals = tuple(cell for cell in self.cells if cell != self.START)
            self.test_goals = tuple(cell for cell in self.cells[2::5] if cell != self.START)
        self.train_goals: tuple[tuple[int, int], ...] = tuple(cell for cell in self.all_goals if cell not in self.test_goals)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n_cells,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self.task: tuple[int, int] = self.train_goals[0]
        self._next_task = self.task
        self.agent = self.cell_index[self.START]
        self._distance = self._distances_to(self.task)

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[tuple[int, int]]:
        """
        :param n: Number of tasks.
        :param split: ``"train"``, ``"test"`` (the held-out goal cells) or ``None`` (all goals); see the class docstring.
        :return: ``n`` goal cells ``(row, col)`` drawn uniformly from the split.
        """
        if split not in (None, "train", "test"):
            raise ValueError(f"Unknown split {split!r}.")
        goals = {None: self.all_goals, "train": self.train_goals, "test": self.test_goals}[split]
        return [goals[int(index)] for index in self.np_random.integers(len(goals), size=n)]

    def set_task(self, task: tuple[int, int]) -> None:
        """
        :param task: The goal cell ``(row, col)``, a free cell of the grid, from the next reset on.
        """
        try:
            cell = (int(task[0]), int(task[1]))
            valid = len(task) == 2 and cell == tuple(task) and cell in self.cell_index
        except (TypeError, ValueError, IndexError):
            valid = False
        if not valid:
            raise ValueError(f"A FourRooms task is a free goal cell (row, col) of the 13 x 13 grid, got {task!r}.")
        self._next_task = cell

    def get_task(self) -> tuple[int, int]:
        return self.task

    def _state_restored(self) -> None:
        self._distance = self._distances_to(self.task)

    def _distances_to(self, goal: tuple[int, int]) -> np.ndarray:
        distance = np.full(self.n_cells, -1, dtype=np.int64)
        start = self.cell_index[goal]
        distance[start] = 0
        queue = deque([start])
        while queue:
            index = queue.popleft()
            for neighbour in self._neighbours[index]:
                if distance[neighbour] < 0:
                    distance[neighbour] = distance[index] + 1
                    queue.append(neighbour)
        return distance

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.n_cells, dtype=np.float32)
        obs[self.agent] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if self._next_task != self.task:
            self._distance = self._distances_to(self._next_task)
        self.task = self._next_task
        self.agent = self.cell_index[self.START]
        return self._obs(), {"task": self.task}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        slip = self.np_random.random() < self.slip_prob
        if not slip or self.slip_rule == "after":
            self.agent = int(self._next_cell[self.agent, int(action)])
        if slip:
            neighbours = self._neighbours[self.agent]
            self.agent = neighbours[int(self.np_random.integers(len(neighbours)))]
        reward = float(self.cells[self.agent] == self.task)
        return self._obs(), reward, False, False, {"task": self.task, "cell": self.cells[self.agent]}

    def oracle_action(self, obs: np.ndarray | None = None) -> int:
        """
        The scripted reference policy: it knows the goal and follows a shortest path; at the goal it pushes
        into a wall to stay (in a hallway, where no move stays, it steps out and back).

        :param obs: Unused; the oracle reads the env state.
        :return: An action.
        """
        distances = self._distance[self._next_cell[self.agent]]
        if self._distance[self.agent] == 0:
            staying = np.flatnonzero(self._next_cell[self.agent] == self.agent)
            if len(staying):
                return int(staying[0])
        return int(np.argmin(distances))

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        scale = 8
        image = np.full((13, 13, 3), 255, dtype=np.uint8)
        image[self.walls] = (60, 60, 60)
        image[self.task] = (60, 180, 75)
        image[self.cells[self.agent]] = (0, 0, 200)
        return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)

"""Distributed training: 2 processes on loopback under torchrun, gloo backend."""

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch as th
from run_folders import checkpoint_steps, wait_for_checkpoints
from toy_envs import make_toy

from sb3_mlsh import MLSH
from sb3_mlsh.distributed.gradients import SubPolicyGradientAverager, pack_weighted_gradients, unpack_weighted_gradients
from sb3_mlsh.distributed.launch import check_layout
from sb3_mlsh.mlsh.bank import SubPolicyOptimizer

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
ITERATIONS = 6
LAUNCH_TIMEOUT = 150  # a hang fails the test instead of blocking the suite

pytestmark = pytest.mark.distributed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment() -> dict[str, str]:
    # The processes must import this checkout's sb3_mlsh, whatever is installed.
    path = os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, node: int | None = None, rendezvous: str | None = None) -> list[str]:
    """
    :param args: The script (or ``-m module``) and its arguments.
    :param node: None: 2 processes on this machine. 0 or 1: the command of that machine of a run over 2 machines
        ("nodes") of 1 process each, which meet through the c10d rendezvous at ``rendezvous`` (``host:port``).
    :return: The ``torchrun`` command line.
    """
    if node is None:
        layout = ["--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    else:
        # c10d ignores --node_rank: it ranks the machines by their address. Each "machine" gets a loopback address of
        # its own so that node 0 is rank 0 (only rank 0's address is connected to, so 127.0.0.2 needs no interface).
        layout = [
            "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint={rendezvous}",
            "--rdzv_id=sb3-mlsh-test", f"--local_addr=127.0.0.{node + 1}",
        ]  # fmt: skip
    return [sys.executable, "-m", "torch.distributed.run", *layout, *args]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """All layouts (G = 2, 1 and 4 over P = 2) in one launch: the records of each rank and the saved models."""
    out = tmp_path_factory.mktemp("distributed")
    command = _torchrun(os.path.join(TESTS, "distributed_worker.py"), str(out), str(ITERATIONS))
    run = subprocess.run(
        command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=LAUNCH_TIMEOUT
    )
    assert run.returncode == 0, run.stdout
    records = {
        groups: [th.load(out / f"G{groups}_rank{rank}.pt", weights_only=False) for rank in range(2)] for groups in (2, 1, 4)
    }
    return out, records


def _assert_subpolicies_identical_and_trained(ranks: list[list[dict]]) -> None:
    first, second = ranks
    assert len(first) == len(second) == ITERATIONS + 1
    for mine, theirs in zip(first, second):
        assert mine["iteration"] == theirs["iteration"]
        assert th.equal(mine["theta"], theirs["theta"]), f"sub-policies differ after iteration {mine['iteration']}"
    changed = [not th.equal(a["theta"], b["theta"]) for a, b in zip(first, first[1:])]
    # They learn in joint iterations only, and every rank counts the same updates.
    assert any(changed) and not all(changed)
    assert [r["sub_updates"] for r in first] == [r["sub_updates"] for r in second]


def test_two_groups_over_two_processes(two_process_run):
    _, records = two_process_run
    ranks = records[2]
    _assert_subpolicies_identical_and_trained(ranks)
    # Rank r hosts group r: its own task stream and master, the group index in the staggering (W=1, U=1, G=2).
    assert [list(r["masters"]) for r in (ranks[0][0], ranks[1][0])] == [[0], [1]]
    assert ranks[0][0]["warmup_lengths"] == {0: 1} and ranks[1][0]["warmup_lengths"] == {1: 2}
    for mine, theirs in zip(*ranks):
        assert not th.equal(mine["masters"][0], theirs["masters"][1])
    # The sub-policies moved while one rank was in warmup and the other in its joint phase (weight 0 for warmup).
    one_joint = [
        i
        for i, (a, b) in enumerate(zip(*ranks))
        if sorted([*a["phases"].values(), *b["phases"].values()]) == ["joint", "warmup"]
    ]
    assert any(not th.equal(ranks[0][i]["theta"], ranks[0][i + 1]["theta"]) for i in one_joint if i + 1 < len(ranks[0]))


def test_one_group_over_two_processes_shares_task_and_master(two_process_run):
    _, records = two_process_run
    ranks = records[1]
    _assert_subpolicies_identical_and_trained(ranks)
    for mine, theirs in zip(*ranks):
        assert th.equal(mine["masters"][0], theirs["masters"][0]), f"masters differ after iteration {mine['iteration']}"
        assert mine["tasks"] == theirs["tasks"] and mine["phases"] == theirs["phases"]
    masters = [r["masters"][0] for r in ranks[0]]
    assert any(not th.equal(a, b) for a, b in zip(masters, masters[1:]))
    assert ranks[0][-1]["tasks"][0][1] > 1  # several tasks, each started with the same fresh master on both ranks


def test_four_groups_over_two_processes_each_hosting_two(two_process_run):
    out, records = two_process_run
    ranks = records[4]
    _assert_subpolicies_identical_and_trained(ranks)
    assert [sorted(r[0]["masters"]) for r in ranks] == [[0, 1], [2, 3]]
    # Staggered by the global index, as one process with 4 groups would (W = 1, U = 1: 1 + round(g * 2 / 4)).
    assert {**ranks[0][0]["warmup_lengths"], **ranks[1][0]["warmup_lengths"]} == {0: 1, 1: 1, 2: 2, 3: 3}
    final = {**ranks[0][-1]["masters"], **ranks[1][-1]["masters"]}
    assert all(not th.equal(final[a], final[b]) for a in range(4) for b in range(a))
    model = MLSH.load(out / "G4.zip", make_toy())
    assert model.task_groups == 4 and model.n_envs == 4
    for index, group in enumerate(model.schedule.groups):
        assert th.equal(th.nn.utils.parameters_to_vector(group.master.policy.parameters()), final[index])


def test_saved_model_loads_and_predicts_in_one_process(two_process_run):
    out, records = two_process_run
    model = MLSH.load(out / "G2.zip", make_toy())
    assert not model.context.distributed
    assert model.task_groups == 2 and model.n_envs == 4  # all groups, and the envs of both processes
    assert th.equal(model.policy.theta, records[2][0][-1]["theta"])
    for rank in range(2):
        master = th.nn.utils.parameters_to_vector(model.schedule.groups[rank].master.policy.parameters())
        assert th.equal(master, records[2][rank][-1]["masters"][rank])
    assert model.num_timesteps == ITERATIONS * 2 * 16 * 2
    obs = np.zeros((3, 3), dtype=np.float32)
    actions, state = model.predict(obs)
    assert actions.shape == (3,) and state.shape == (3, 2)
    model.learn(64, reset_num_timesteps=False)  # and it trains on in one process


# --------------------------------------------------------------------------------------------------- crash, resume
ENV_ID = "mlsh/MovementBandits-v0"
N_ENVS, N_STEPS = 2, 50
ITERATION_STEPS = 2 * N_ENVS * N_STEPS  # both processes
SAVE_FREQ = 3 * ITERATION_STEPS
TARGET = 16 * ITERATION_STEPS
KILL_TO_EXIT_LIMIT = 60.0


def _worker_of_rank(launcher: int, rank: int) -> int | None:
    for thread in os.listdir(f"/proc/{launcher}/task"):
        with open(f"/proc/{launcher}/task/{thread}/children") as file:
            for child in map(int, file.read().split()):
                with open(f"/proc/{child}/environ", "rb") as environ:
                    if f"RANK={rank}".encode() in environ.read().split(b"\0"):
                        return child
    return None


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the worker processes through /proc")
def test_killed_rank_stops_the_run_with_a_resume_hint_then_resume_finishes(tmp_path):
    train = ["-m", "sb3_mlsh.train", "--no-progress", "--verbose", "0", "--dist-timeout", "30"]
    command = _torchrun(
        *train, "--env", ENV_ID, "-n", str(TARGET), "--save-freq", str(SAVE_FREQ), "-f", str(tmp_path), "--seed", "1",
        "--task-groups", "2", "-params", f"n_envs:{N_ENVS}", f"n_steps:{N_STEPS}",
    )  # fmt: skip
    run = os.path.join(tmp_path, "mlsh", ENV_ID.replace("/", "-") + "_1")
    launcher = subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_checkpoints(launcher, run, 2, LAUNCH_TIMEOUT)
        victim = _worker_of_rank(launcher.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = launcher.communicate(timeout=KILL_TO_EXIT_LIMIT + 30)
        stopped_after = time.monotonic() - killed_at
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0
    assert stopped_after < KILL_TO_EXIT_LIMIT, output
    assert not os.path.exists(os.path.join(run, "model.zip")), "the run finished before the kill"
    # The surviving rank says what happened and how to go on.
    assert f"--resume {run}" in output, output
    assert "last checkpoint is" in output, output
    last = checkpoint_steps(run)[-1]
    assert last < TARGET

    resumed = subprocess.run(
        _torchrun(*train, "--resume", run, "--save-freq", str(SAVE_FREQ)),
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stdout
    match = re.search(r"at (\d+) steps \(target (\d+)\)", resumed.stdout)
    assert match is not None, resumed.stdout
    assert last - ITERATION_STEPS <= int(match.group(1)) <= last and int(match.group(2)) == TARGET
    final = MLSH.load(os.path.join(run, "model.zip"))
    assert final.num_timesteps == TARGET and final.task_groups == 2 and final.n_envs == 2 * N_ENVS


# ------------------------------------------------------------------------------------------------------ two machines
def _launch_on_two_nodes(args: list[str], homes: list[str]) -> list[tuple[int, str]]:
    """
    Run ``torchrun ... args`` on two "machines" on loopback and wait for both (killing both if one hangs).

    :param homes: Each node's working directory: a relative path names a folder of that node's own, as on machines
        without a shared disk.
    :return: Each node's exit status and output.
    """
    rendezvous = f"127.0.0.1:{_free_port()}"
    logs = [os.path.join(home, "torchrun.log") for home in homes]
    agents: list[subprocess.Popen] = []
    try:
        for node, (home, log) in enumerate(zip(homes, logs)):
            with open(log, "w") as output:
                command = _torchrun(*args, node=node, rendezvous=rendezvous)
                agents.append(subprocess.Popen(command, cwd=home, env=_environment(), stdout=output, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        for agent in agents:
            agent.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.terminate()  # torchrun stops its workers (a SIGKILL would leave them running)
                try:
                    agent.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
    outputs = []
    for agent, log in zip(agents, logs):
        with open(log) as file:
            outputs.append((agent.returncode, file.read()))
    return outputs


@pytest.mark.slow
def test_two_nodes_through_c10d_rendezvous_train_save_and_resume_without_a_shared_disk(tmp_path):
    homes = [str(tmp_path / f"node{node}") for node in range(2)]
    for home in homes:
        os.mkdir(home)
    train = ["-m", "sb3_mlsh.train", "--no-progress", "--verbose", "0", "--dist-timeout", "30"]
    first, target = 4 * ITERATION_STEPS, 6 * ITERATION_STEPS  # iteration 6 is a joint one: the sub-policies learn
    started = _launch_on_two_nodes(
        [
            *train, "--env", ENV_ID, "-n", str(first), "--save-freq", str(2 * ITERATION_STEPS), "-f", "logs",
            "--seed", "1", "--task-groups", "1", "-params", f"n_envs:{N_ENVS}", f"n_steps:{N_STEPS}",
        ],
        homes,
    )  # fmt: skip
    assert [code for code, _ in started] == [0, 0], started
    assert "Training MLSH on" in started[0][1], "node 0 is not rank 0: the rest of the test expects it to be"
    relative = os.path.join("logs", "mlsh", ENV_ID.replace("/", "-") + "_1")
    run, elsewhere = (os.path.join(home, relative) for home in homes)
    assert checkpoint_steps(run) == [2 * ITERATION_STEPS, first]
    # Rank 0 wrote the run folder on its machine; the other machine holds only the Monitor files of its envs.
    assert sorted(os.listdir(elsewhere)) == [f"{index}.monitor.csv" for index in (2, 3)]

    # The same commands with --resume, under a relative path: the other machine has no run folder to read there.
    resumed = _launch_on_two_nodes([*train, "--resume", relative, "-n", str(target)], homes)
    assert [code for code, _ in resumed] == [0, 0], resumed
    assert f"at {first} steps (target {target})" in resumed[0][1], resumed[0][1]
    with open(os.path.join(run, "iterations.csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["iteration"]) for row in rows] == list(range(1, 7))
    assert [int(row["timesteps"]) for row in rows] == [ITERATION_STEPS * i for i in range(1, 7)]

    model = MLSH.load(os.path.join(run, "model.zip"))
    assert model.num_timesteps == target and model.task_groups == 1 and model.n_envs == 2 * N_ENVS
    before = MLSH.load(os.path.join(run, "checkpoints", f"mlsh_{first}_steps.zip"))
    vector = th.nn.utils.parameters_to_vector
    assert not th.equal(vector(model.policy.parameters()), vector(before.policy.parameters())), "no learning after resume"
    actions, state = model.predict(model.env.reset(), deterministic=True)
    assert actions.shape == (2 * N_ENVS,) and state.shape == (2 * N_ENVS, 2)
    assert all(model.action_space.contains(action) for action in actions)


# --------------------------------------------------------------------------------------------------- in one process
def _fake_all_reduce(other: th.Tensor):
    """Stands in for the all-reduce: adds another process's message to this one's."""

    def all_reduce(message: th.Tensor) -> None:
        message += other

    return all_reduce


def _optimizer(n_subpolicies: int, size: int, my_counts: np.ndarray) -> tuple[th.nn.Parameter, SubPolicyOptimizer]:
    theta = th.nn.Parameter(th.zeros(n_subpolicies, size))
    base = SubPolicyOptimizer(
        [theta],
        sample_counts=lambda: my_counts,
        optimizer_class=th.optim.SGD,
        lr=1.0,
        max_grad_norm=float("inf"),
        share_scaled_steps=False,
    )
    return theta, base


def test_subpolicy_gradients_are_averaged_weighted_by_sample_counts():
    gen = th.Generator().manual_seed(0)
    mine, theirs = th.randn(3, 4, generator=gen), th.randn(3, 4, generator=gen)
    mine[2] = float("nan")  # a sub-policy this process did not use: its gradient must not leak, even as NaN
    my_counts, their_counts = np.array([2, 1, 0]), np.array([0, 3, 0])
    theta, optimizer = _optimizer(3, 4, my_counts)
    optimizer.reduce_gradients = SubPolicyGradientAverager(
        _fake_all_reduce(pack_weighted_gradients(theirs, th.tensor(their_counts)))
    )
    theta.grad = mine.clone()
    optimizer.step()  # SGD with lr 1: the step is minus the averaged gradient
    th.testing.assert_close(theta[0], -mine[0])  # only this process had samples of sub-policy 0
    th.testing.assert_close(theta[1], -(1 * mine[1] + 3 * theirs[1]) / 4)  # weights proportional to the counts
    assert th.equal(theta[2], th.zeros(4))  # nobody used sub-policy 2: not stepped

    # A process in warmup (its minibatch weighs 0) is ignored: the others' gradient alone moves the sub-policies.
    theta, optimizer = _optimizer(3, 4, my_counts)
    averager = SubPolicyGradientAverager(_fake_all_reduce(pack_weighted_gradients(theirs, th.tensor(their_counts))))
    optimizer.reduce_gradients = averager
    averager.set_weight(0)
    theta.grad = mine.clone()
    optimizer.step()
    assert th.equal(theta[0], th.zeros(4))
    th.testing.assert_close(theta[1], -theirs[1])


def test_pack_and_unpack_are_a_weighted_mean():
    gradients = [th.full((2, 3), 1.0), th.full((2, 3), 4.0), th.full((2, 3), float("inf"))]
    counts = [th.tensor([1, 0]), th.tensor([2, 0]), th.tensor([0, 0])]
    total = sum(pack_weighted_gradients(g, c) for g, c in zip(gradients, counts))
    mean, totals = unpack_weighted_gradients(total, 2)
    th.testing.assert_close(mean, th.tensor([[3.0] * 3, [0.0] * 3]))
    assert totals.tolist() == [3, 0]


def test_layouts_that_do_not_divide_are_refused_with_the_fix():
    check_layout(2, 4)
    check_layout(4, 2)
    with pytest.raises(ValueError, match=r"task_groups \(3\) and the number of processes \(2\) must divide"):
        check_layout(3, 2)


def test_single_process_run_never_imports_the_distributed_code():
    script = (
        f"import sys; sys.path.insert(0, {TESTS!r})\n"
        "from toy_envs import make_toy\n"
        "from sb3_mlsh import MLSH\n"
        "model = MLSH('MlpPolicy', make_toy(), n_envs=2, task_groups=2, n_steps=8, warmup_iterations=0, seed=0)\n"
        "model.learn(32)\n"
        "assert model.iteration == 2\n"
        "print(sorted(name for name in sys.modules if name.startswith('sb3_mlsh')))\n"
    )
    env = {key: value for key, value in _environment().items() if key not in ("WORLD_SIZE", "RANK")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.strip().splitlines()[-1]
    assert "sb3_mlsh.mlsh" in loaded
    # One process has its context (sb3_mlsh.distributed.context) but none of the torch.distributed machinery.
    assert all(f"sb3_mlsh.distributed.{name}" not in loaded for name in ("torch_context", "gradients", "launch"))


@pytest.fixture
def one_process_group():
    """A process group of one process in this process: the distributed code path without launching anything."""
    th.distributed.init_process_group("gloo", store=th.distributed.HashStore(), rank=0, world_size=1)
    yield
    th.distributed.destroy_process_group()


def test_distributed_mode_refuses_target_kl_and_adapt(one_process_group):
    with pytest.raises(ValueError, match=r"subpolicy_kwargs\['target_kl'\] is not supported in distributed mode"):
        MLSH(
            "MlpPolicy",
            make_toy(),
            n_envs=2,
            n_steps=8,
            macro_duration=4,
            subpolicy_kwargs=dict(target_kl=0.01),
            distributed=True,
        )
    model = MLSH("MlpPolicy", make_toy(), n_envs=2, n_steps=8, macro_duration=4, seed=0, distributed=True)
    assert model.context.distributed and model.context.world_size == 1
    model.learn(32)
    with pytest.raises(NotImplementedError, match="runs in one process"):
        model.adapt(0, total_timesteps=16)

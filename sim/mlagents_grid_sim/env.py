"""A small learnable environment that stands in for a Unity build, for real mlagents-learn.

Each behavior's agents see a random sign (+1/-1) with some noise and choose one of two
actions; matching the sign earns +0.1, missing it -0.1, over episodes of fixed length. A
good learning rate reaches a cumulative reward near 2 within a few thousand steps and a bad
one stays near 0, so hyperparameters visibly change the curves.

Only imported inside the ML-Agents environment (.venv-mlagents).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from mlagents_envs.base_env import (
    ActionSpec,
    ActionTuple,
    BaseEnv,
    BehaviorMapping,
    BehaviorSpec,
    DecisionSteps,
    DimensionProperty,
    ObservationSpec,
    ObservationType,
    TerminalSteps,
)

AGENTS = 4
EPISODE = 20
REWARD = 0.1
NOISE = 0.5
STEP_DELAY_ENV = "GRID_SIM_STEP_DELAY"


def env_behavior_name(name: str) -> str:
    """Unity reports behaviors as `Name?team=0`; ML-Agents strips the team for its folders."""
    return name if "?team=" in name else f"{name}?team=0"


class _Behavior:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.next_id = 0
        # Declared loosely: numpy's stubs type shapes differently from one release to the next.
        self.agent_ids: npt.NDArray[np.int32] = np.zeros(AGENTS, dtype=np.int32)
        self.signs: npt.NDArray[np.float32] = np.zeros(AGENTS, dtype=np.float32)
        self.actions: npt.NDArray[np.int32] = np.zeros(AGENTS, dtype=np.int32)
        self.elapsed = 0
        self.decisions: DecisionSteps
        self.terminals: TerminalSteps

    def observe(self) -> np.ndarray:
        self.signs = self.rng.choice(np.array([-1.0, 1.0], dtype=np.float32), AGENTS)
        noise = self.rng.normal(0.0, NOISE, AGENTS).astype(np.float32)
        return np.stack([self.signs, noise], axis=1)

    def new_episode(self, spec: BehaviorSpec) -> None:
        self.agent_ids = np.arange(self.next_id, self.next_id + AGENTS, dtype=np.int32)
        self.next_id += AGENTS
        self.elapsed = 0
        self.decisions = _decisions(self.observe(), np.zeros(AGENTS, np.float32), self.agent_ids)
        self.terminals = TerminalSteps.empty(spec)

    def step(self, spec: BehaviorSpec) -> None:
        matched = (self.actions == 1) == (self.signs > 0)
        rewards = np.where(matched, REWARD, -REWARD).astype(np.float32)
        self.elapsed += 1
        if self.elapsed >= EPISODE:
            last_ids = self.agent_ids
            final_obs = self.observe()
            self.new_episode(spec)
            self.terminals = TerminalSteps(
                obs=[final_obs],
                reward=rewards,
                interrupted=np.zeros(AGENTS, dtype=bool),
                agent_id=last_ids,
                group_id=np.zeros(AGENTS, dtype=np.int32),
                group_reward=np.zeros(AGENTS, dtype=np.float32),
            )
        else:
            self.decisions = _decisions(self.observe(), rewards, self.agent_ids)
            self.terminals = TerminalSteps.empty(spec)


def _decisions(obs: np.ndarray, rewards: np.ndarray, agent_ids: np.ndarray) -> DecisionSteps:
    return DecisionSteps(
        obs=[obs],
        reward=rewards,
        agent_id=agent_ids,
        action_mask=None,
        group_id=np.zeros(len(agent_ids), dtype=np.int32),
        group_reward=np.zeros(len(agent_ids), dtype=np.float32),
    )


class SimEnv(BaseEnv):
    """Every behavior of the trainer config, with AGENTS agents each."""

    academy_capabilities = None

    def __init__(self, behaviors: list[str], seed: int) -> None:
        rng = np.random.default_rng(seed)
        spec = BehaviorSpec(
            observation_specs=[
                ObservationSpec(
                    shape=(2,),
                    dimension_property=(DimensionProperty.NONE,),
                    observation_type=ObservationType.DEFAULT,
                    name="sign",
                )
            ],
            action_spec=ActionSpec.create_discrete((2,)),
        )
        names = [env_behavior_name(name) for name in behaviors]
        self._specs = {name: spec for name in names}
        self._behaviors = {name: _Behavior(rng) for name in names}
        self._delay = float(os.environ.get(STEP_DELAY_ENV) or 0.0)
        self.reset()

    def reset(self) -> None:
        for name, behavior in self._behaviors.items():
            behavior.new_episode(self._specs[name])

    def step(self) -> None:
        if self._delay:
            time.sleep(self._delay)
        for name, behavior in self._behaviors.items():
            behavior.step(self._specs[name])

    def close(self) -> None:
        self._behaviors = {}

    @property
    def behavior_specs(self) -> BehaviorMapping:
        return BehaviorMapping(self._specs)

    def set_actions(self, behavior_name: str, action: ActionTuple) -> None:
        behavior = self._behaviors[behavior_name]
        behavior.actions = np.asarray(action.discrete)[:, 0].astype(np.int32)

    def set_action_for_agent(self, behavior_name: str, agent_id: int, action: ActionTuple) -> None:
        behavior = self._behaviors[behavior_name]
        index = int(np.nonzero(behavior.agent_ids == agent_id)[0][0])
        behavior.actions[index] = int(np.asarray(action.discrete)[0, 0])

    def get_steps(self, behavior_name: str) -> tuple[DecisionSteps, TerminalSteps]:
        behavior = self._behaviors[behavior_name]
        return behavior.decisions, behavior.terminals


def factory(behaviors: list[str], seed: int) -> Any:
    """An env factory with ML-Agents' signature: one SimEnv per env worker."""

    def create(worker_id: int, _side_channels: list[Any]) -> SimEnv:
        return SimEnv(behaviors, seed + worker_id)

    return create

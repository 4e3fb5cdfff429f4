"""The switch job of a rolling switch SIGKILLed at each of its steps, under load (tests/killed.py)."""
from __future__ import annotations

import pytest

from killed import ROLLING_STEPS, killed_then_deployed, make, tear_down


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make("rolling", sandbox_host, tmp_path_factory)
    yield test_site
    tear_down(test_site)


@pytest.mark.parametrize("step", ROLLING_STEPS)
def test_a_rolling_switch_job_killed_at_a_step_is_undone_and_the_next_deploy_switches(site, step):
    killed_then_deployed(site, step)

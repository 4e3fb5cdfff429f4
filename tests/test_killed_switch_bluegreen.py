"""The switch job of a blue/green switch SIGKILLed at each of its steps, under load (tests/killed.py)."""
from __future__ import annotations

import pytest

from killed import BLUEGREEN_STEPS, killed_then_deployed, make, tear_down


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make("bluegreen", sandbox_host, tmp_path_factory)
    yield test_site
    tear_down(test_site)


@pytest.mark.parametrize("step", BLUEGREEN_STEPS)
def test_a_bluegreen_switch_job_killed_at_a_step_is_undone_and_the_next_deploy_switches(site, step):
    killed_then_deployed(site, step)
